"""A job's pool: its worker image and, on the swarm provider, its placement constraints.

Workers are pooled per pool key, which is what the queue, the scale-up and the worker records call a
job's "image": the image alone when a job has no constraints (so nothing changes for them), else the
image followed by each constraint, sorted, as `` @constraint`` (``IMAGE @node.hostname==build2``).
"""

from __future__ import annotations

SEPARATOR = " @"


def normal_constraint(text: str) -> str:
    """``node.labels.gpu == true`` -> ``node.labels.gpu==true``: one spelling per constraint."""
    return "".join(text.split())


def pool_key(image: str, constraints: list[str]) -> str:
    parts = sorted({normal_constraint(c) for c in constraints if c.strip()})
    return image + "".join(SEPARATOR + c for c in parts)


def split_pool(key: str) -> tuple[str, list[str]]:
    """The image and constraints a pool key names (``""``: the configured image)."""
    image, *constraints = key.split(SEPARATOR)
    return image, constraints


def constraint_problem(text: str) -> str | None:
    """Why a --constraint is not swarm's placement syntax, or None when it is."""
    c = normal_constraint(text)
    op = "==" if "==" in c else "!=" if "!=" in c else ""
    if not op:
        return f"--constraint {text!r} is not KEY==VALUE or KEY!=VALUE (e.g. node.hostname==build2)"
    key, _, value = c.partition(op)
    if not key or not value or "=" in value or "@" in c:
        return f"--constraint {text!r} is not KEY==VALUE or KEY!=VALUE (e.g. node.hostname==build2)"
    return None
