"""`actsmith ci`: the GitHub Actions front end. An event payload comes in; a Session works on a branch
of its own; the branch is pushed to the checkout's origin, a draft pull request is opened or updated
and one comment tells the outcome. Everything that talks to GitHub stays on the host: the token
never enters the sandbox, the trajectory or the logs.

    actions_env.py   the job's GITHUB_* variables, its step summary and outputs
    trigger.py       which events start a run, from whom (write access), and the task they make
    github_api.py    the few REST calls, each failure one line
    origin.py        fetch where the work starts and push where it goes, the token on the host only
    guard.py         the commit as it may leave: no workflow changes, no other issue's closing keywords
    report.py        the conclusion and the Markdown the comment, the summary and the PR show
    defang.py        the model's words made inert Markdown: no image, link, HTML, mention or stray close
    driver.py        the run from event to outcome
"""

from agent_cli.ci.driver import CiOptions, CiResult, run_ci

__all__ = ["CiOptions", "CiResult", "run_ci"]
