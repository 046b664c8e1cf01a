"""Pure text of plan-then-execute: the planning run's prompt and the approved execution's."""

from __future__ import annotations

PLAN_HEADING = "## Approved plan"

PLANNING_PROMPT = """\
You are in read-only planning mode: do not change any file. Study the repository and write a
step-by-step plan for the task below: which files to change and how, and how to check the
result. Your final message must be the plan itself, complete and self-contained.

Task:
{prompt}
"""

EXECUTION_PROMPT = """\
{prompt}

{heading}
This plan was reviewed and approved; follow it.

{plan}
"""


def planning_prompt(prompt: str) -> str:
    """Return the prompt of the read-only run that writes a draft's plan."""
    return PLANNING_PROMPT.format(prompt=prompt.rstrip("\n"))


def execution_prompt(prompt: str, plan: str | None) -> str:
    """Return the prompt an approved draft runs with: the task, then its approved plan."""
    if not plan or not plan.strip():
        return prompt
    return EXECUTION_PROMPT.format(
        prompt=prompt.rstrip("\n"), heading=PLAN_HEADING, plan=plan.strip("\n")
    )


def planning_title(title: str) -> str:
    """Return the title of a planning run."""
    return f"plan: {title}"
