"""The `greenroom` command: click subcommands over the REST routes, and `chat` over /ws.

Exit status: 0 on success, 1 when the server refuses or cannot be reached, 2 on a
usage error (click's convention). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from client import render
from client.api import Api, ClientError
from client.config import ChatState, Credentials, resolve_server, terminal_width

F = TypeVar("F", bound=Callable[..., Any])


# The server's password rule, checked before the confirming prompt so a person retypes
# only a password that can be accepted.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024


class Context:
    """What every command shares: the server (`--server` before or after the command) and `--json`."""

    def __init__(self, server: str | None, as_json: bool) -> None:
        self.server_option = server
        self.as_json = as_json

    @property
    def server(self) -> str:
        return resolve_server(self.server_option)

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.server)

    def saved(self) -> dict[str, str]:
        saved = self.credentials.load()
        if saved is None:
            raise ClientError("not_logged_in", "not logged in: run greenroom login USERNAME")
        return saved

    def api(self, login: bool = True) -> Api:
        return Api(self.server, self.saved()["token"]) if login else Api(self.server)

    def username(self) -> str:
        return self.saved()["username"]


def handles_errors(room_arg: str | None = None, user_arg: str | None = None) -> Callable[[F], F]:
    """Turn a ClientError into one line on stderr and exit status 1."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ClientError as err:
                line = render.format_error(
                    err.code,
                    err.message,
                    room=kwargs.get(room_arg) if room_arg else None,
                    user=kwargs.get(user_arg) if user_arg else None,
                )
                width = terminal_width(sys.stderr)
                click.echo(render.format_lines(f"greenroom: {line}", width), err=True)
                sys.exit(1)

        return wrapped  # type: ignore[return-value]

    return decorator


def _server_given(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check a --server value at once; after the command, it overrides one given before."""
    if value is None:
        return None
    url = resolve_server(value)
    obj = ctx.find_object(Context)
    if obj is not None:
        obj.server_option = url
    return url


def _json_given(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--json anywhere on the line (before the command, on a group, after it) means JSON."""
    obj = ctx.find_object(Context)
    if obj is None:
        return value
    obj.as_json = obj.as_json or value
    return obj.as_json


SERVER_HELP = "Server address. Default: $GREENROOM_SERVER, else http://127.0.0.1:8000."
JSON_HELP = "Print machine-readable JSON (one object per line; a list is one object)."


def json_option(fn: F) -> F:
    """--json and --server, which every command takes after its name as well as before it."""
    fn = click.option(
        "--server",
        metavar="URL",
        expose_value=False,
        callback=_server_given,
        help=SERVER_HELP,
    )(fn)
    return click.option("--json", "as_json", is_flag=True, callback=_json_given, help=JSON_HELP)(fn)


password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)


def emit(as_json: bool, obj: Any, text: str) -> None:
    """Print a result: as one line of JSON, or as text (checked for unsafe characters)."""
    click.echo(
        render.as_json(obj) if as_json else render.format_lines(text, terminal_width(sys.stdout))
    )


def emit_list(
    as_json: bool,
    key: str,
    items: list[dict[str, Any]],
    table: Callable[[list[dict[str, Any]]], str],
    empty: str = "",
) -> None:
    """Print a whole list (every page): as aligned columns, or one JSON document `{key: [...]}`."""
    if as_json:
        click.echo(render.as_json({key: items}))
    elif items:
        click.echo(render.format_lines(table(items), terminal_width(sys.stdout)))
    elif empty:
        click.echo(empty)


def check_password_length(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise click.UsageError(
            f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )
    return password


def read_password(password_stdin: bool, confirm: bool) -> str:
    """The password from stdin, or asked without echo; a new one is checked, then confirmed."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: no password on standard input")
        return password
    if confirm:
        return click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, value_proc=check_password_length
        )
    return click.prompt("Password", hide_input=True)


def now() -> datetime:
    return datetime.now().astimezone()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", metavar="URL", callback=_server_given, help=SERVER_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.version_option("0.1.0", prog_name="greenroom")
@click.pass_context
def cli(ctx: click.Context, server: str | None, as_json: bool) -> None:
    """Chat on a Greenroom server from your terminal, or script it from a shell.

    \b
    Examples:
      greenroom register alice
      greenroom login alice
      greenroom rooms create general
      greenroom chat ROOM_ID
      printf 'hi\\nbye\\n' | greenroom chat ROOM_ID

    --server and --json may also come after the command: greenroom rooms --json
    """
    ctx.obj = Context(server, as_json)


# ---- accounts -----------------------------------------------------------------


@cli.command()
@click.argument("username")
@password_stdin_option
@json_option
@click.pass_obj
@handles_errors(user_arg="username")
def register(ctx: Context, username: str, password_stdin: bool, as_json: bool) -> None:
    """Create an account and log in to it (the password is asked without echo).

    \b
    Examples:
      greenroom register alice
      echo "$PASSWORD" | greenroom register alice --password-stdin
    """
    password = read_password(password_stdin, confirm=True)
    api = ctx.api(login=False)
    name = api.register(username, password)["username"]
    try:
        session = api.login(name, password)
    except ClientError as err:
        raise ClientError(
            err.code,
            f"registered {render.format_safe(name)}, but logging in failed "
            f"({render.format_error(err.code, err.message)}): run greenroom login USERNAME",
        ) from None
    ctx.credentials.save(session["username"], session["token"])
    shown = {"username": session["username"], "server": ctx.server}
    emit(as_json, shown, f"registered {render.format_safe(name)}; logged in on {ctx.server}")


@cli.command()
@click.argument("username")
@password_stdin_option
@json_option
@click.pass_obj
@handles_errors(user_arg="username")
def login(ctx: Context, username: str, password_stdin: bool, as_json: bool) -> None:
    """Log in and save the session token for this server (file mode 0600).

    \b
    Examples:
      greenroom login alice
      echo "$PASSWORD" | greenroom login alice --password-stdin
    """
    result = ctx.api(login=False).login(username, read_password(password_stdin, confirm=False))
    ctx.credentials.save(result["username"], result["token"])
    shown = {"username": result["username"], "server": ctx.server}
    emit(as_json, shown, f"logged in as {render.format_safe(result['username'])} on {ctx.server}")


@cli.command()
@json_option
@click.pass_obj
@handles_errors()
def logout(ctx: Context, as_json: bool) -> None:
    """End the session on the server and delete the saved token.

    \b
    Example:
      greenroom logout
    """
    try:
        ctx.api().logout()
    except ClientError as err:
        if err.code not in ("unauthorized", "not_logged_in"):
            raise
    ctx.credentials.delete()
    emit(as_json, {"logged_out": True}, "logged out")


@cli.command()
@json_option
@click.pass_obj
@handles_errors()
def whoami(ctx: Context, as_json: bool) -> None:
    """Show who you are logged in as.

    \b
    Example:
      greenroom whoami
    """
    me = ctx.api().me()
    emit(
        as_json,
        {**me, "server": ctx.server},
        f"{render.format_safe(me['username'])} on {ctx.server}",
    )


@cli.command()
@json_option
@click.pass_obj
@handles_errors()
def users(ctx: Context, as_json: bool) -> None:
    """List everyone with their status and when they were last seen.

    \b
    Example:
      greenroom users
    """
    emit_list(as_json, "users", ctx.api().users(), lambda us: render.format_users(us, now()))


@cli.command()
@click.argument("user")
@json_option
@click.pass_obj
@handles_errors(user_arg="user")
def status(ctx: Context, user: str, as_json: bool) -> None:
    """Show one user's status and last seen time.

    \b
    Example:
      greenroom status bob
    """
    u = ctx.api().user(user)
    emit(as_json, u, render.format_user(u, now()))


# ---- rooms --------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def rooms(click_ctx: click.Context, as_json: bool) -> None:
    """List the rooms you can see, or manage one (see the subcommands).

    In the list, `*` marks the rooms you are a member of, with their unread counts.

    \b
    Examples:
      greenroom rooms
      greenroom rooms create general --capacity 50
      greenroom rooms join abc123
    """
    if click_ctx.invoked_subcommand is None:
        list_rooms(click_ctx.obj, as_json)


@handles_errors()
def list_rooms(ctx: Context, as_json: bool) -> None:
    emit_list(
        as_json,
        "rooms",
        ctx.api().rooms(),
        render.format_rooms,
        empty="no rooms yet: greenroom rooms create NAME",
    )


@rooms.command("create")
@click.argument("name")
@click.option("--capacity", type=click.IntRange(min=1), help="Most members allowed.")
@click.option("--private", is_flag=True, help="Only invited users may join.")
@json_option
@click.pass_obj
@handles_errors()
def rooms_create(
    ctx: Context, name: str, capacity: int | None, private: bool, as_json: bool
) -> None:
    """Create a room; you become its owner and first member.

    \b
    Examples:
      greenroom rooms create general
      greenroom rooms create secret --private --capacity 5
      ROOM=$(greenroom rooms create general --json | jq -r .id)
    """
    r = ctx.api().create_room(name, capacity, private)
    emit(
        as_json, r, f"created room {render.format_safe(r['id'])} ({render.format_safe(r['name'])})"
    )


@rooms.command("show")
@click.argument("room_id")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def rooms_show(ctx: Context, room_id: str, as_json: bool) -> None:
    """Show a room with its member and online counts.

    \b
    Example:
      greenroom rooms show abc123
    """
    r = ctx.api().room(room_id)
    emit(as_json, r, render.format_room(r))


@rooms.command("delete")
@click.argument("room_id")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def rooms_delete(ctx: Context, room_id: str, as_json: bool) -> None:
    """Delete a room you own, with all its messages.

    \b
    Example:
      greenroom rooms delete abc123
    """
    ctx.api().delete_room(room_id)
    emit(as_json, {"deleted": room_id}, f"deleted room {room_id}")


@rooms.command("invite")
@click.argument("room_id")
@click.argument("user")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id", user_arg="user")
def rooms_invite(ctx: Context, room_id: str, user: str, as_json: bool) -> None:
    """Invite a user to a private room you own.

    \b
    Example:
      greenroom rooms invite abc123 bob
    """
    ctx.api().invite(room_id, user)
    emit(as_json, {"invited": user, "room": room_id}, f"invited {user} to room {room_id}")


@rooms.command("join")
@click.argument("room_id")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def rooms_join(ctx: Context, room_id: str, as_json: bool) -> None:
    """Become a member of a room (until you leave it).

    \b
    Example:
      greenroom rooms join abc123
    """
    r = ctx.api().join(room_id)
    emit(as_json, r, f"joined room {render.format_safe(r['id'])} ({render.format_safe(r['name'])})")


@rooms.command("leave")
@click.argument("room_id")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def rooms_leave(ctx: Context, room_id: str, as_json: bool) -> None:
    """Stop being a member of a room.

    \b
    Example:
      greenroom rooms leave abc123
    """
    ctx.api().leave(room_id)
    emit(as_json, {"left": room_id}, f"left room {room_id}")


@cli.command()
@click.argument("room_id")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def members(ctx: Context, room_id: str, as_json: bool) -> None:
    """List a room's members with their status.

    \b
    Example:
      greenroom members abc123
    """
    emit_list(as_json, "members", ctx.api().members(room_id), render.format_members)


# ---- messages -----------------------------------------------------------------


@cli.command()
@click.argument("room_id")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", type=click.IntRange(min=0), help="Only messages before this seq.")
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def history(ctx: Context, room_id: str, limit: int, before: int | None, as_json: bool) -> None:
    """Print a room's messages, oldest first (the newest page by default).

    \b
    Examples:
      greenroom history abc123
      greenroom history abc123 --limit 20 --before 101
    """
    page = ctx.api().history(room_id, limit=limit, before=before)
    for m in page["messages"]:
        emit(as_json, m, render.format_message(m))


@cli.command()
@click.argument("room_id")
@click.argument("message", nargs=-1)
@json_option
@click.pass_obj
@handles_errors(room_arg="room_id")
def send(ctx: Context, room_id: str, message: tuple[str, ...], as_json: bool) -> None:
    """Send one message (from the arguments, else from standard input).

    \b
    Examples:
      greenroom send abc123 hello everyone
      uptime | greenroom send abc123
    """
    body = " ".join(message) if message else sys.stdin.read().rstrip("\n")
    if not body.strip():
        raise click.UsageError("nothing to send: give a MESSAGE or pipe one in")
    m = ctx.api().post(room_id, body, uuid.uuid4().hex)
    emit(as_json, m, f"sent #{render.format_safe(m['seq'])} to {render.format_safe(room_id)}")


@cli.command()
@click.argument("room_ids", nargs=-1, required=True)
@json_option
@click.pass_obj
@handles_errors()
def chat(ctx: Context, room_ids: tuple[str, ...], as_json: bool) -> None:
    """Chat live in one or more rooms; lines you type go to the current room.

    Reconnects by itself and resumes where it left off: nothing missed, nothing
    printed twice, and nothing you typed is lost or sent twice.

    \b
    Examples:
      greenroom chat abc123
      greenroom chat abc123 def456        (type /switch def456 to talk there)
      printf 'hi\\nbye\\n' | greenroom chat abc123
    Type /help inside for the slash commands.
    """
    from client.chat import run_chat

    api = ctx.api()
    username = ctx.username()
    names: dict[str, str] = {}
    for room_id in room_ids:
        try:
            names[room_id] = str(api.join(room_id)["name"])
        except ClientError as err:
            raise ClientError(
                err.code, render.format_error(err.code, err.message, room=room_id)
            ) from None
    state = ChatState(ctx.server, username)
    sys.exit(run_chat(api, state, list(room_ids), names, as_json))


def main() -> None:
    cli(prog_name="greenroom")
