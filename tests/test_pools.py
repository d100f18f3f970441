"""Pool keys: a job's image and swarm placement constraints, as the queue and the providers read them."""

from __future__ import annotations

import pytest

from hodei.pools import constraint_problem, parse_volume, pool_key, shown_pool, split_pool, split_user, user_pool


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


def test_a_user_pool_keeps_its_image_constraints_user_and_binds() -> None:
    key = user_pool(pool_key("img", ["node.hostname==b2"]), 1000, 100, ["/home/u/p:/home/u/p:rw", "/d:/data:ro"])
    assert split_pool(key) == ("img", ["node.hostname==b2"])
    assert split_user(key) == ((1000, 100), ["/home/u/p:/home/u/p:rw", "/d:/data:ro"])
    assert shown_pool(key) == "img @node.hostname==b2"
    assert split_user("img @node.hostname==b2") == (None, [])


def test_volumes_are_host_container_and_mode() -> None:
    assert parse_volume("/data") == ("/data", "/data", False)
    assert parse_volume("/data:ro") == ("/data", "/data", True)
    assert parse_volume("/data:/in:ro") == ("/data", "/in", True)
    assert parse_volume("data/../cache:/c:rw", base="/home/u") == ("/home/u/cache", "/c", False)
    for bad, why in (("/a:/b:/c", "is not HOST[:CONTAINER][:ro]"), ("/a:", "is not HOST[:CONTAINER][:ro]"),
                     ("/a:rel", "is not an absolute path"), ("/a:/", "whole file system"),
                     ("/a b #c", "cannot be mounted")):
        with pytest.raises(ValueError, match=why.replace("[", "\\[").replace("]", "\\]")):
            parse_volume(bad)
