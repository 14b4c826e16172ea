from agent_cli.cli import main

main()
