"""The `askdoc` command: tokens, lag, event tailing, dead letters, doctor import, dev stack.

Exit codes: 0 ok, 1 failure (including a check that found a problem), 2 usage error.
Settings come from ASKDOC_* variables like the services'; `--redis-url` overrides.
Tables are Rich on a terminal and tab-separated when piped; `--json` where offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from askdoc_cli import dev as dev_stack
from askdoc_cli import dlq as dead_letters
from askdoc_cli import doctors as directory
from askdoc_cli import journey
from askdoc_cli import lag as lag_report
from askdoc_cli import moderation as moderating
from askdoc_cli import tail as tailing
from askdoc_cli.context import (
    err,
    fail,
    jwt_secret,
    load_settings,
    out,
    print_table,
    run_redis,
    stream_name,
    usage_error,
)
from askdoc_cli.launcher import SERVICES
from shared.auth import issue_token
from shared.redis import RedisClient, safe_url

app = typer.Typer(
    name="askdoc",
    help="askdoc operations: tokens, stream lag, events, dead letters, doctor import, dev stack.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold the JWT secret
    context_settings={"help_option_names": ["-h", "--help"]},
)
events_app = typer.Typer(help="Read the event streams (outside any consumer group).")
dlq_app = typer.Typer(help="List and replay dead letters (askdoc.dead-letter).")
doctors_app = typer.Typer(help="Manage the doctor directory on the notify service.")
app.add_typer(events_app, name="events", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq", no_args_is_help=True)
moderation_app = typer.Typer(help="The moderation queue on the questions service (admins).")
app.add_typer(doctors_app, name="doctors", no_args_is_help=True)
app.add_typer(moderation_app, name="moderation", no_args_is_help=True)

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis to use [default: $ASKDOC_REDIS_URL]", show_default=False
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


class Role(StrEnum):
    """The roles a token can carry."""

    patient = "patient"
    doctor = "doctor"
    admin = "admin"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# --- token ------------------------------------------------------------------------------


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="patient, doctor or admin")],
    sub: Annotated[str, typer.Option(help="Subject: the user's id (a doctor's directory id)")],
    name: Annotated[str, typer.Option(help="Display name [default: the sub]")] = "",
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds")] = 3600,
) -> None:
    """Print a signed development token (HS256 with $ASKDOC_JWT_SECRET)."""
    settings = load_settings()
    secret = jwt_secret(settings)
    if not sub.strip():
        usage_error("must not be empty", "--sub")
    if ttl > settings.jwt_max_lifetime_s:
        usage_error(
            f"the services refuse tokens living over {settings.jwt_max_lifetime_s} s "
            "(ASKDOC_JWT_MAX_LIFETIME_S)",
            "--ttl",
        )
    print(
        issue_token(secret, sub, role.value, name, ttl, settings.jwt_issuer, settings.jwt_audience)
    )


# --- lag --------------------------------------------------------------------------------


@app.command()
def lag(
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
    fail_on_behind: Annotated[
        bool,
        typer.Option("--fail-on-behind", help="Exit 1 if a group fell behind the retention."),
    ] = False,
) -> None:
    """Length, pending, lag and oldest pending entry of every consumer group on every stream
    (and on every relay outbox, on a Redis Cluster)."""
    settings = load_settings(redis_url)
    report = run_redis(settings, lag_report.collect)
    if as_json:
        _print_json(lag_report.as_json(report))
    else:
        rows, styles = lag_report.table_rows(report)
        print_table(
            f"askdoc streams at {safe_url(settings.redis_url)}", lag_report.COLUMNS, rows, styles
        )
    if not as_json:
        for line in lag_report.ceiling_lines(report):
            err().print(Text(line, style="bold red"))
    behind = [f"{g.group} on {g.stream}" for s in report for g in s.groups if g.behind_retention]
    if behind and not as_json:
        err().print(
            Text(
                "behind retention (unread entries were trimmed): " + ", ".join(behind),
                style="bold red",
            )
        )
    if behind and fail_on_behind:
        raise typer.Exit(1)


# --- trace ------------------------------------------------------------------------------


@app.command("trace")
def trace_question(
    question_id: Annotated[str, typer.Argument(help="The question's id")],
    doctor: Annotated[
        str | None,
        typer.Option("--doctor", help="Say why this doctor was or was not alerted."),
    ] = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """A question's journey: its events, the doctors alerted and why, deliveries, dead letters."""
    settings = load_settings(redis_url)
    report = run_redis(settings, lambda r: journey.collect(r, question_id, doctor))
    if as_json:
        _print_json(report)
    else:
        _print_journey(report)
    if not report["found"]:
        err().print(
            Text(f"question {question_id} not found on askdoc.question-posted", style="red")
        )
        raise typer.Exit(1)


def _print_journey(report: dict[str, Any]) -> None:
    console = out()
    console.print(
        f"question {report['question_id']}  correlation_id={report['correlation_id']}  "
        f"specialties={','.join(report['specialties'] or [])}"
    )
    rows = [
        [
            e["stream"].removeprefix("askdoc."),
            e["entry_id"],
            str(e.get("occurred_at", "")),
            " ".join(
                f"{k}={e[k]}"
                for k in ("answer_id", "doctor_id", "recipient_id", "kind", "value")
                if e.get(k) is not None
            ),
        ]
        for e in report["events"]
    ]
    print_table("events", ["stream", "entry", "at", "about"], rows)
    alert_rows = [
        [
            a["recipient_id"] or "",
            a["kind"] or "",
            journey.reason_text(a["reason"]) if a["kind"] == "question-match" else "",
            " ".join(f"{c}:{s}" for c, s in a["delivery"].items()),
        ]
        for a in report["alerts"]
    ]
    print_table("alerts", ["recipient", "kind", "why", "delivery"], alert_rows)
    if report["dead_letters"]:
        letter_rows = [
            [d["entry_id"], str(d["source_stream"]), str(d["group"]), str(d["error"])]
            for d in report["dead_letters"]
        ]
        print_table("dead letters", ["entry", "from", "group", "error"], letter_rows)
    if "doctor" in report:
        verdict = report["doctor"]
        console.print(f"doctor {verdict['doctor_id']}: {verdict['verdict']} ({verdict['why']})")


# --- events tail ------------------------------------------------------------------------


@events_app.command("tail")
def events_tail(
    stream: Annotated[
        str, typer.Argument(metavar="STREAM", help="e.g. question-posted or askdoc.question-posted")
    ],
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Begin with the oldest entry kept.")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after N events.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Follow a stream live (XREAD BLOCK, no consumer group: consumers are never disturbed)."""
    full = stream_name(stream)
    settings = load_settings(redis_url)
    console = out()
    tty = console.is_terminal

    def emit(record: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(record, default=str), flush=True)
        elif tty:
            console.print(tailing.readable(record))
        else:
            print(tailing.readable(record).plain, flush=True)

    async def work(redis: RedisClient) -> None:
        start = await tailing.start_id(redis, full, from_start)
        where = "the oldest entry" if from_start else f"after {start}"
        err().print(Text(f"following {full} from {where} (Ctrl-C stops)", style="dim"))
        await tailing.follow(redis, full, start, count, emit)

    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live tail ends
            run_redis(settings, work)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- dlq --------------------------------------------------------------------------------


def _replayed_text(letter: dead_letters.Letter) -> str:
    if letter.replayed is None:
        return "-"
    return f"as {letter.replayed.get('new_entry_id')}"


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many, newest first")] = 20,
    group: Annotated[
        str | None, typer.Option(help="Only the letters of this consumer group")
    ] = None,
    as_json: JsonOut = False,
    redis_url: RedisUrl = None,
) -> None:
    """Dead letters, newest first: id, source stream, group, error, deliveries, time."""
    settings = load_settings(redis_url)
    letters = run_redis(settings, lambda r: dead_letters.newest(r, limit, group))
    if as_json:
        _print_json([letter.as_json() for letter in letters])
        return
    rows = [
        [
            x.id,
            x.occurred_at,
            x.source_stream,
            x.entry_id,
            x.group,
            "?" if x.delivery_count is None else str(x.delivery_count),
            (x.unreadable or x.error)[:300],
            _replayed_text(x),
        ]
        for x in letters
    ]
    columns = (
        "id",
        "time",
        "source stream",
        "source entry",
        "group",
        "deliveries",
        "error",
        "replayed",
    )
    styles: list[str | None] = ["dim" if x.replayed else None for x in letters]
    print_table(f"dead letters ({len(letters)} newest)", columns, rows, styles)


@dlq_app.command("replay")
def dlq_replay(
    entry_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ENTRY_ID", help="Dead-letter ids (as `askdoc dlq list` shows)"),
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Every dead letter not replayed yet, oldest first.")
    ] = False,
    group: Annotated[
        str | None, typer.Option(help="Only the letters of this consumer group")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replay named letters even if replayed before, and events older than the "
            "dedupe window.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")] = False,
    as_json: JsonOut = False,
    redis_url: RedisUrl = None,
) -> None:
    """Re-XADD dead letters' original fields to their source streams, and record the replay.

    Each replay is a new entry on the source stream (consumers are idempotent, so groups
    that already processed the event skip it). Letters stay in askdoc.dead-letter and are
    marked replayed in the hash {askdoc.dead-letter}:replayed, so --all never replays a
    letter twice; naming a replayed letter again needs --force. An event older than the
    dedupe window ($ASKDOC_DEDUPE_TTL_S) is skipped unless --force: the markers that make
    consumers skip what they already did have expired.
    """
    ids = entry_ids or []
    if bool(ids) == replay_all:
        usage_error("give dead-letter ids or --all (not both)", "ENTRY_ID... / --all")
    bad = [i for i in ids if not dead_letters.ENTRY_ID.match(i)]
    if bad:
        usage_error(f"not a stream entry id: {', '.join(bad)}", "ENTRY_ID")
    settings = load_settings(redis_url)

    async def work(redis: RedisClient) -> dict[str, list[dict[str, Any]]]:
        outcome: dict[str, list[dict[str, Any]]] = {"replayed": [], "skipped": [], "failed": []}
        if replay_all:
            letters = await dead_letters.all_letters(redis, group)
            missing: list[str] = []
        else:
            letters, missing = await dead_letters.by_ids(redis, ids)
            if group is not None:
                letters = [x for x in letters if x.group == group]
        for letter_id in missing:
            outcome["failed"].append({"id": letter_id, "reason": "no such dead letter"})
        for letter in letters:
            base = {"id": letter.id, "source_stream": letter.source_stream, "group": letter.group}
            if letter.replayed is not None and (replay_all or not force):
                reason = f"already replayed {_replayed_text(letter)}"
                if not replay_all:
                    reason += " (--force replays it again)"
                outcome["skipped"].append({**base, "reason": reason})
                continue
            stale = dead_letters.stale_problem(letter, settings.dedupe_ttl_s)
            if stale is not None and not force:
                outcome["skipped"].append({**base, "reason": stale})
                continue
            problem = dead_letters.replay_problem(letter)
            if problem is not None:
                outcome["failed"].append({**base, "reason": problem})
                continue
            if dry_run:
                outcome["replayed"].append({**base, "new_entry_id": None, "dry_run": True})
                continue
            new_id = await dead_letters.replay(redis, letter)
            outcome["replayed"].append({**base, "new_entry_id": new_id})
        if not dry_run:
            await dead_letters.prune_records(redis)
        return outcome

    outcome = run_redis(settings, work)
    if as_json:
        _print_json(outcome)
    else:
        rows: list[list[str]] = []
        styles: list[str | None] = []
        for kind, style in (("replayed", "green"), ("skipped", "dim"), ("failed", "red")):
            for item in outcome[kind]:
                if kind == "replayed":
                    what = "would replay" if dry_run else f"replayed as {item['new_entry_id']}"
                else:
                    what = f"{kind}: {item['reason']}"
                rows.append(
                    [item["id"], item.get("source_stream", "?"), item.get("group", "?"), what]
                )
                styles.append(style)
        if rows:
            print_table(
                "dlq replay", ("dead letter", "source stream", "group", "outcome"), rows, styles
            )
        n = len(outcome["replayed"])
        verb = "would replay" if dry_run else "replayed"
        err().print(
            f"{verb} {n} dead letter{'s' if n != 1 else ''}; "
            f"{len(outcome['skipped'])} skipped, {len(outcome['failed'])} failed"
        )
    if outcome["failed"]:
        raise typer.Exit(1)


# --- doctors import ---------------------------------------------------------------------


@doctors_app.command("import")
def doctors_import(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.csv", exists=True, dir_okay=False, readable=True, help="CSV file"
        ),
    ],
    notify_url: Annotated[
        str, typer.Option(envvar="ASKDOC_NOTIFY_URL", help="The notify service")
    ] = "http://127.0.0.1:8004",
    token_: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="ASKDOC_TOKEN",
            show_default=False,
            help="Bearer token [default: an admin token minted from $ASKDOC_JWT_SECRET]",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=100, help="Requests in flight")] = 20,
    as_json: JsonOut = False,
) -> None:
    """Register doctors from a CSV (id,name,credentials,specialties,zip,city,state,lat,lon,
    radius_km,rating,review_count,email,npi,taxonomy_code,status;
    specialties ';'-separated) by PATCH /doctors/{id}:
    a re-import keeps what the file leaves out (quiet hours, cap, webhook, e-mail)."""
    try:
        rows, rejected = directory.read_rows(file)
    except directory.CsvError as exc:
        fail(str(exc), code=2)  # the file does not fit the command: a usage error
    bearer = _admin_bearer(token_, "askdoc doctors import", ttl_s=6 * 3600)
    total = len(rows) + len(rejected)
    progress = Progress(
        TextColumn("importing doctors"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[rejected]} rejected"),
        TimeElapsedColumn(),
        console=err(),
        disable=not err().is_terminal,
    )

    async def work() -> directory.ImportResult:
        problem = await directory.check_reachable(notify_url)
        if problem is not None:
            fail(problem)
        with progress:
            task = progress.add_task("import", total=total, rejected=len(rejected))
            progress.advance(task, len(rejected))
            failures = len(rejected)

            def advance(outcome: directory.Rejected | None) -> None:
                nonlocal failures
                failures += outcome is not None
                progress.update(task, advance=1, rejected=failures)

            return await directory.import_rows(rows, notify_url, bearer, concurrency, advance)

    result = asyncio.run(work())
    if result.token_refused is not None:
        fail(f"notify refused the token (401): {result.token_refused}")
    remote = result.rejected
    rejected = sorted(rejected + remote, key=lambda r: r.number)
    imported = len(rows) - len(remote)
    if as_json:
        _print_json(
            {
                "rows": total,
                "imported": imported,
                "run_id": result.run_id,
                "rejected": [r.as_json() for r in rejected],
            }
        )
    else:
        if rejected:
            print_table(
                "rejected rows",
                ("row", "id", "status", "reason"),
                [
                    [str(r.number), r.doctor_id or "-", str(r.status or "local"), r.message]
                    for r in rejected
                ],
                ["red"] * len(rejected),
            )
        err().print(
            f"imported {imported} of {total} doctors; {len(rejected)} rejected "
            f"(correlation ids askdoc-import-{result.run_id}-row<N>)"
        )
    if rejected:
        raise typer.Exit(1)


# --- doctors verify / suspend -------------------------------------------------------------

NotifyUrl = Annotated[str, typer.Option(envvar="ASKDOC_NOTIFY_URL", help="The notify service")]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ASKDOC_TOKEN",
        show_default=False,
        help="Bearer token [default: an admin token minted from $ASKDOC_JWT_SECRET]",
    ),
]
DoctorArg = Annotated[str, typer.Argument(metavar="ID", help="The doctor's directory id")]


def _admin_bearer(token_: str | None, what: str, ttl_s: int = 3600) -> str:
    """The given token, or an admin token minted from $ASKDOC_JWT_SECRET for `what`."""
    settings = load_settings()
    return token_ or issue_token(
        jwt_secret(settings),
        "askdoc-cli",
        "admin",
        what,
        min(ttl_s, settings.jwt_max_lifetime_s),
        settings.jwt_issuer,
        settings.jwt_audience,
    )


def _set_status(
    doctor_id: str, status: str, notify_url: str, token_: str | None, as_json: bool
) -> None:
    bearer = _admin_bearer(token_, f"askdoc doctors {status}")
    code, reply = asyncio.run(directory.set_status(notify_url, bearer, doctor_id, status))
    if not isinstance(reply, dict):
        fail(f"notify refused ({code}): {reply}" if code else reply)
    if as_json:
        _print_json(reply)
    else:
        err().print(f"{doctor_id}: {reply['status']} (profile version {reply['profile_version']})")


@doctors_app.command("verify")
def doctors_verify(
    doctor_id: DoctorArg,
    notify_url: NotifyUrl = "http://127.0.0.1:8004",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Mark a doctor verified (their NPI checked): they are alerted and may answer."""
    _set_status(doctor_id, "verified", notify_url, token_, as_json)


@doctors_app.command("suspend")
def doctors_suspend(
    doctor_id: DoctorArg,
    notify_url: NotifyUrl = "http://127.0.0.1:8004",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Suspend a doctor: no alerts, no answers, until verified again."""
    _set_status(doctor_id, "suspended", notify_url, token_, as_json)


# --- moderation list / hide / restore / dismiss ---------------------------------------------------

QuestionsUrl = Annotated[
    str, typer.Option(envvar="ASKDOC_QUESTIONS_URL", help="The questions service")
]
QuestionArg = Annotated[str, typer.Argument(metavar="QUESTION_ID", help="The question's id")]
AnswerOpt = Annotated[
    str | None,
    typer.Option("--answer", metavar="ANSWER_ID", help="An answer of the question, not itself"),
]


class FlagReason(StrEnum):
    """The reason categories of a flag (and of a decision)."""

    spam = "spam"
    unsafe_medical_advice = "unsafe-medical-advice"
    harassment = "harassment"
    other = "other"


class QueueStatus(StrEnum):
    """Which list of the queue to read."""

    open = "open"
    hidden = "hidden"


@moderation_app.command("list")
def moderation_list(
    status: Annotated[
        QueueStatus, typer.Option(help="open: flagged items; hidden: taken down")
    ] = QueueStatus.open,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Items per page")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Go on from a previous page")] = None,
    questions_url: QuestionsUrl = "http://127.0.0.1:8001",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Flagged items with counts per reason, most flagged then oldest first."""
    bearer = _admin_bearer(token_, "askdoc moderation list")
    code, reply = asyncio.run(moderating.queue(questions_url, bearer, status.value, limit, cursor))
    if not isinstance(reply, dict):
        fail(f"questions refused ({code}): {reply}" if code else reply)
    if as_json:
        _print_json(reply)
        return
    print_table(
        f"moderation queue ({status.value})", moderating.COLUMNS, moderating.table_rows(reply)
    )
    if reply.get("next_cursor"):
        err().print(f"more: --cursor {reply['next_cursor']}")


def _decide(
    decision: str,
    question_id: str,
    answer_id: str | None,
    reason: FlagReason | None,
    questions_url: str,
    token_: str | None,
    as_json: bool,
) -> None:
    command = {"hidden": "hide", "restored": "restore", "dismissed": "dismiss"}[decision]
    bearer = _admin_bearer(token_, f"askdoc moderation {command}")
    code, reply = asyncio.run(
        moderating.decide(
            questions_url,
            bearer,
            question_id,
            answer_id,
            decision,
            reason.value if reason else None,
        )
    )
    if not isinstance(reply, dict):
        fail(f"questions refused ({code}): {reply}" if code else reply)
    if as_json:
        _print_json(reply)
    elif reply["decision"] == "dismissed":
        err().print(
            f"{reply['item_kind']} {reply['item_id']}: {reply['dismissed_flags']} flag(s) "
            "dismissed; it stays shown and left the open queue"
        )
    else:
        err().print(
            f"{reply['item_kind']} {reply['item_id']}: {reply['decision']} "
            f"({reply['reason']}, decision {reply['decision_version']})"
        )


ReasonOpt = Annotated[
    FlagReason | None,
    typer.Option(help="What the author is told [default: the most flagged reason]"),
]


@moderation_app.command("hide")
def moderation_hide(
    question_id: QuestionArg,
    answer_id: AnswerOpt = None,
    reason: ReasonOpt = None,
    questions_url: QuestionsUrl = "http://127.0.0.1:8001",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Hide a question (or, with --answer, one of its answers); its author is told."""
    _decide("hidden", question_id, answer_id, reason, questions_url, token_, as_json)


@moderation_app.command("restore")
def moderation_restore(
    question_id: QuestionArg,
    answer_id: AnswerOpt = None,
    questions_url: QuestionsUrl = "http://127.0.0.1:8001",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Bring a hidden question (or, with --answer, an answer) back; its author is told."""
    _decide("restored", question_id, answer_id, None, questions_url, token_, as_json)


@moderation_app.command("dismiss")
def moderation_dismiss(
    question_id: QuestionArg,
    answer_id: AnswerOpt = None,
    questions_url: QuestionsUrl = "http://127.0.0.1:8001",
    token_: AdminToken = None,
    as_json: JsonOut = False,
) -> None:
    """Judge a flagged question (or answer) fine: its flags so far leave the open queue.

    It stays shown and nobody is told; a later flag puts it back in the queue.
    """
    _decide("dismissed", question_id, answer_id, None, questions_url, token_, as_json)


# --- dev --------------------------------------------------------------------------------


@app.command()
def dev(
    redis_port: Annotated[
        int | None,
        typer.Option(help="Redis on 127.0.0.1:PORT [default: from $ASKDOC_REDIS_URL, else 6379]"),
    ] = None,
    redis_url: RedisUrl = None,
    base_port: Annotated[
        int, typer.Option(min=1, max=65532, help="questions on it, answers +1, votes +2, notify +3")
    ] = 8001,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="Run only this service (repeatable) [default: all]"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Keep Redis's AOF here [default: a temp dir]"),
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for /readyz")] = 60,
    stop_timeout: Annotated[float, typer.Option(help="Seconds from SIGTERM to SIGKILL")] = 25,
) -> None:
    """Run Redis (if none listens) and the services as children, logs prefixed; Ctrl-C stops all."""
    names = list(dict.fromkeys(service or SERVICES))
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        usage_error(f"unknown service {', '.join(unknown)}", "--service")
    if redis_url and redis_port:
        usage_error("give --redis-url or --redis-port, not both", "--redis-port")
    url = f"redis://127.0.0.1:{redis_port}/0" if redis_port else redis_url
    settings = load_settings(url)
    console = out()
    if settings.jwt_secret is None:
        secret = secrets.token_urlsafe(48)
        console.print(
            Text.assemble(
                ("ASKDOC_JWT_SECRET=", "bold"),
                secret,
                " (generated for this run; export it to mint tokens with `askdoc token`)",
            )
        )
    else:
        secret = jwt_secret(settings)
    try:
        code = dev_stack.run(
            console,
            settings.redis_url,
            secret,
            base_port,
            names,
            data_dir,
            ready_timeout,
            stop_timeout,
        )
    except dev_stack.DevError as exc:
        fail(str(exc))
    raise typer.Exit(code)
