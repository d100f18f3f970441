"""Why a user may not open hodeid's socket, and what to do about it, in one sentence."""

from __future__ import annotations

import grp
import os
import pwd
import stat


def denied(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:  # a directory on the way is closed to us
        return f"permission denied on {path}: ask whoever runs that hodeid for access, or start your own with `hodeid`"
    owner = _user(st.st_uid)
    if not st.st_mode & stat.S_IWGRP:
        return (f"hodeid at {path} is private to {owner}: it must be started with --socket-group to share it"
                " (the system service shares it with the `hodei` group), or start your own with `hodeid`")
    try:
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return f"hodeid at {path} is shared with group {st.st_gid}, which you are not in"
    me = _user(os.getuid())
    if me in group.gr_mem:  # added to it, but this login predates that
        return (f"you were added to the `{group.gr_name}` group after this session started, so it cannot use"
                f" hodeid at {path} yet: log in again (or run `newgrp {group.gr_name}`)")
    return (f"you are not in the `{group.gr_name}` group, which may use hodeid at {path}:"
            f" run `sudo usermod -aG {group.gr_name} $USER`, then log in again")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
