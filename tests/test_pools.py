"""Pool keys: a job's image and swarm placement constraints, as the queue and the providers read them."""

from __future__ import annotations

from hodei.pools import constraint_problem, pool_key, split_pool


def test_no_constraint_keeps_the_image_as_the_key() -> None:
    assert pool_key("reg/img:1", []) == "reg/img:1"
    assert pool_key("", []) == ""


def test_constraints_are_one_spelling_and_order() -> None:
    a = pool_key("img", ["node.labels.gpu == true", "node.hostname==b2"])
    b = pool_key("img", ["node.hostname==b2", "node.labels.gpu==true", "node.hostname == b2"])
    assert a == b == "img @node.hostname==b2 @node.labels.gpu==true"
    assert split_pool(a) == ("img", ["node.hostname==b2", "node.labels.gpu==true"])
    assert split_pool(pool_key("", ["node.role!=manager"])) == ("", ["node.role!=manager"])


def test_constraint_syntax_is_checked() -> None:
    assert constraint_problem("node.hostname==b2") is None
    assert constraint_problem("node.role != manager") is None
    for bad in ("node.hostname", "==b2", "node.hostname==", "a=b", "a==b==c"):
        assert constraint_problem(bad) is not None, bad
