"""Every hodeictl command and option, described once.

The fast parser (``hodeictl.parse``) reads the command line from this table, and the typer app that
prints ``--help`` (``hodeictl.cli``) is built from it, so the two cannot disagree. A command runs the
function of ``hodeictl.actions`` named by its ``run``, called with the socket and one keyword per
option and argument (its ``dest``).

Adding an option is one ``Opt`` in its command's tuple; adding a command is one ``Command`` (and its
function in ``hodeictl.actions``). This module imports nothing: it is loaded by every call.
"""

from __future__ import annotations

# Kinds of value an option or argument takes. FLAG takes none: it is True when given.
STR, INT, FLOAT, FLAG = "str", "int", "float", "flag"


class Opt:
    """An option: its names (the first long one gives its dest), the kind of value, and what it means.

    many: repeatable, each value collected in a list (default []). default None with a number kind
    means "not given". env: an environment variable read when the option is absent.
    """

    __slots__ = ("default", "dest", "env", "help", "kind", "many", "metavar", "names")

    def __init__(self, *names: str, help: str, kind: str = STR, default: object = "", many: bool = False,
                 dest: str = "", metavar: str = "", env: str = "") -> None:
        self.names = names
        self.help = help
        self.kind = kind
        self.many = many
        self.default = False if kind == FLAG else [] if many else default
        self.dest = dest or names[0].lstrip("-").replace("-", "_")
        self.metavar = metavar
        self.env = env

    def takes_value(self) -> bool:
        return self.kind != FLAG


class Arg:
    """A positional argument. many: takes all that are left (required: at least one)."""

    __slots__ = ("dest", "help", "many", "required")

    def __init__(self, dest: str, help: str, many: bool = False, required: bool = True) -> None:
        self.dest = dest
        self.help = help
        self.many = many
        self.required = required


class Command:
    """A command: its name, the help line, its options and arguments, and the action that runs it.

    interspersed=False: options are read only before the first argument; the rest are arguments
    (submit, whose command may carry options of its own).
    """

    __slots__ = ("aliases", "args", "help", "interspersed", "name", "options", "run")

    def __init__(self, name: str, help: str, options: tuple[Opt, ...] = (), args: tuple[Arg, ...] = (),
                 run: str = "", interspersed: bool = True, aliases: tuple[tuple[str, str], ...] = ()) -> None:
        self.name = name
        self.help = help
        self.options = options
        self.args = args
        self.run = run or name
        self.interspersed = interspersed
        self.aliases = aliases  # (name, help line) of other names for the same command


class Group:
    """Commands under one name (hodeictl itself, `hodeictl agents`), with options of its own."""

    __slots__ = ("commands", "help", "name", "options")

    def __init__(self, name: str, help: str, commands: tuple[Command | Group, ...],
                 options: tuple[Opt, ...] = ()) -> None:
        self.name = name
        self.help = help
        self.commands = commands
        self.options = options


HELP_NAMES = ("-h", "--help")  # every command and group takes them; typer prints the help

JSON = Opt("--json", kind=FLAG, help="print JSON")
JOB = Arg("job", "job id")
JOBS = Arg("jobs", "job ids", many=True)

SUBMIT = Command(
    "submit", "Queue a command. Prints the job id (or follows it with -f).",
    args=(Arg("command", "one shell line, or an argv after --", many=True, required=False),),
    interspersed=False,
    options=(
        Opt("--name", "-n", help="a name to recognise the job by"),
        Opt("--env", "-e", many=True, help="KEY=VALUE, repeatable"),
        Opt("--cwd", help="working directory (default: the current one)"),
        Opt("--timeout", kind=FLOAT, default=None, help="seconds before the job is stopped"),
        Opt("--grace", kind=FLOAT, default=10.0, help="seconds between SIGTERM and SIGKILL"),
        Opt("--priority", kind=INT, default=0, help="higher runs first"),
        Opt("--label", "-l", many=True, help="KEY=VALUE, repeatable"),
        Opt("--image", help="worker image (docker provider)"),
        Opt("--retries", kind=INT, default=0, help="run again up to N times if its worker is lost"),
        Opt("--retry-on-failure", kind=FLAG, help="retry failed runs too"),
        Opt("--constraint", many=True, metavar="EXPR",
            help="swarm placement, e.g. node.hostname==build2; repeatable"),
        Opt("--tty", "-t", kind=FLAG,
            help="run under a pseudo-terminal (colours, line-buffering); stderr joins stdout"),
        Opt("--volume", many=True, metavar="HOST[:CONTAINER][:ro]",
            help="docker provider: mount this host directory too (at the same path by default); repeatable"),
        Opt("--follow", "-f", kind=FLAG, help="follow the output; exit with the job's status"),
        Opt("--from", dest="from_file", metavar="FILE",
            help="queue each line of FILE (- for stdin) as a shell command, with these options;"
                 " prints one id a line"),
        JSON,
    ),
)

LOGS = Command(
    "logs", "Print a job's output: stdout to stdout, stderr to stderr.",
    args=(Arg("job", "job id (default: your latest job)", required=False),),
    options=(
        Opt("--follow", "-f", kind=FLAG, help="wait for more output; exit with the job's status"),
        Opt("--tail", kind=INT, default=None, help="only the last N lines"),
        Opt("--timestamps", "-t", kind=FLAG, help="prefix each line with its time"),
        Opt("--attempt", kind=INT, default=0, help="output of attempt K (default: the latest)"),
        Opt("--json", kind=FLAG, help='one JSON object a chunk, on stdout: {"stream": "stdout" or "stderr",'
                                       ' "time": seconds since the epoch, "text": the bytes as UTF-8'
                                       ' (or "base64": them in base64 when they are not)}'),
    ),
)

CANCEL = Command(
    "cancel", "Stop jobs: SIGTERM to all their processes, SIGKILL after the grace period.",
    args=(Arg("jobs", "job ids", many=True, required=False),),
    options=(
        Opt("--all", kind=FLAG, dest="all_jobs",
            help="every unfinished job of yours (root and hodeid's --admin-group: everyone's)"),
        Opt("--state", "-s", many=True, help="every job of yours in this state (queued, assigned, running),"
                                             " repeatable"),
        Opt("--grace", kind=FLOAT, default=None, help="seconds between SIGTERM and SIGKILL"),
        Opt("--no-wait", kind=FLAG, help="return without waiting for the job to stop"),
        JSON,
    ),
)

WAIT = Command(
    "wait", "Wait for jobs to finish. Exit status: the first failing job's (see --help of hodeictl).",
    args=(JOBS,), options=(JSON,),
)

LIST = Command(
    "list", "List jobs, oldest first.", run="list_", aliases=(("ls", "List jobs (same as list)."),),
    options=(
        Opt("--state", "-s", many=True, help="only jobs in this state, repeatable"),
        Opt("--limit", kind=INT, default=50, help="the newest N jobs (0: all)"),
        Opt("--name", "-n", metavar="PATTERN", help="only jobs whose name matches this glob (* ? [...])"),
        Opt("--label", "-l", many=True, metavar="K=V", help="only jobs with this label, repeatable"),
        JSON,
    ),
)

SHOW = Command("show", "Show one job in full.", args=(JOB,), options=(JSON,))

WORKERS = Command("workers", "List the workers hodeid runs now.", options=(JSON,))

AGENTS = Group(
    "agents", "Agents on other machines (root or hodeid's --admin-group).",
    commands=(
        Command("add", "Register an agent for another machine; prints the environment to start it with.",
                run="agents_add",
                options=(Opt("--pool", help="take jobs submitted with --image POOL"
                                             " (default: jobs naming no image)"), JSON)),
        Command("rm", "Revoke a remote agent's registration; a job it runs is marked lost.", run="agents_rm",
                args=(Arg("worker", "the agent's worker id"),)),
    ),
)

# `hodeictl --version`: an option of hodeictl itself that runs this command instead of another.
VERSION = Command("--version", "Print hodeictl's version and exit.", run="version")

HODEICTL = Group(
    "hodeictl", "Queue shell commands on hodeid, follow their output, cancel them.",
    commands=(SUBMIT, LOGS, CANCEL, WAIT, LIST, SHOW, WORKERS, AGENTS),
    options=(Opt("--socket", default=None, env="HODEI_SOCKET", help="hodeid's control socket"),
             Opt("--version", kind=FLAG, help=VERSION.help)),
)
