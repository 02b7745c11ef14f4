"""Digest and alert jobs on PTB's JobQueue, per group, in the group's timezone (SPEC 5, 6).

Every send is claimed in the database first (unique per chat, kind, metric and period), so
restarts and several processes on one PostgreSQL database never send anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from telegram.error import Forbidden, TelegramError
from telegram.ext import Application

from bot import alerts, charts, metrics, reports, service
from bot.chat_text import fit
from bot.config import Config, GroupSettings
from bot.i18n import t
from bot.tracking import not_members
from storage.chats import ChatInfo
from storage.repo import Repo

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _services(application: Application[Any, Any, Any, Any, Any, Any]) -> tuple[Repo, Config]:
    return application.bot_data["repo"], application.bot_data["config"]


async def schedule_all(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    repo, _ = _services(application)
    jq = application.job_queue
    assert jq is not None
    jq.run_repeating(cleanup_job, interval=86400, first=60, name="cleanup")
    for chat_id in await repo.chat_ids():
        await schedule_chat(application, chat_id, catch_up=True)


async def schedule_chat(
    application: Application[Any, Any, Any, Any, Any, Any],
    chat_id: int,
    *,
    catch_up: bool = False,
) -> None:
    """(Re)build a group's jobs; a digest missed while the bot was down goes out now."""
    jq = application.job_queue
    assert jq is not None, "install python-telegram-bot[job-queue]"
    repo, config = _services(application)
    settings = await service.group_settings(repo, config, chat_id)
    unschedule_chat(application, chat_id)
    at = time(settings.digest_time.hour, settings.digest_time.minute, tzinfo=settings.tz)
    jobs = [
        jq.run_daily(digest_job, at, name=f"digest:{chat_id}", chat_id=chat_id),
        jq.run_repeating(
            alert_job,
            interval=settings.alert_interval_s,
            first=5,
            name=f"alerts:{chat_id}",
            chat_id=chat_id,
        ),
    ]
    local_now = utcnow().astimezone(settings.tz)
    if catch_up and local_now.time() >= settings.digest_time:
        jobs.append(jq.run_once(digest_job, 0, name=f"digest-catchup:{chat_id}", chat_id=chat_id))
    _jobs_of(application)[chat_id] = jobs


async def cleanup_job(context: Any) -> None:
    """Delete messages older than `[storage] retention_days` (README: privacy)."""
    repo, config = _services(context.application)
    removed = await repo.drop_old_messages(utcnow() - timedelta(days=config.retention_days))
    log.info("clean-up: %d messages older than %d days removed", removed, config.retention_days)


def _jobs_of(application: Application[Any, Any, Any, Any, Any, Any]) -> dict[int, list[Any]]:
    """Each group's jobs, kept here: JobQueue.get_jobs_by_name scans every job of every
    group, which made (re)scheduling 1,000 groups quadratic."""
    jobs: dict[int, list[Any]] = application.bot_data.setdefault("chat_jobs", {})
    return jobs


def unschedule_chat(application: Application[Any, Any, Any, Any, Any, Any], chat_id: int) -> None:
    for job in _jobs_of(application).pop(chat_id, []):
        if not job.removed:
            with contextlib.suppress(JobLookupError):  # a one-off job that has run is gone
                job.schedule_removal()


async def digest_job(context: Any) -> None:
    rounds: DigestRound = context.application.bot_data.setdefault(
        "digest_round", DigestRound(context.application)
    )
    await rounds.join(context.job.chat_id)


async def alert_job(context: Any) -> None:
    await send_alerts(context.application, context.job.chat_id, utcnow())


GATHER_S = 0.05  # digest jobs fired this soon after a round's first join it (APScheduler
# starts the jobs due at one instant together)


class DigestRound:
    """The digest jobs APScheduler fires together (every group with the same digest time)
    join one round: the first waits `GATHER_S` for the others, then `send_digests` reads
    them all with one statement per table instead of a dozen per group."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self.application = application
        self.waiting: dict[int, asyncio.Future[bool]] | None = None  # joined, but the first

    async def join(self, chat_id: int) -> bool:
        """Whether this group's digest was sent by the round it joined."""
        if self.waiting is not None:  # a round is gathering
            joined = self.waiting.get(chat_id)
            if joined is None:
                joined = self.waiting[chat_id] = asyncio.get_running_loop().create_future()
            return await joined
        others: dict[int, asyncio.Future[bool]] = {}
        self.waiting = others
        try:
            await asyncio.sleep(GATHER_S)
            self.waiting = None
            sent = await send_digests(self.application, [chat_id, *others], utcnow())
        except BaseException as exc:
            self.waiting = None
            for joined in others.values():
                if joined.done():  # its job was cancelled meanwhile
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    joined.cancel()
                else:
                    joined.set_exception(exc)
            raise
        for other, joined in others.items():
            if not joined.done():
                joined.set_result(sent[other])
        return sent[chat_id]


async def send_digest(
    application: Application[Any, Any, Any, Any, Any, Any], chat_id: int, now: datetime
) -> bool:
    """Send the digest of the day that just ended, at most once; True if this call sent it."""
    return (await send_digests(application, [chat_id], now))[chat_id]


async def send_digests(
    application: Application[Any, Any, Any, Any, Any, Any], chat_ids: list[int], now: datetime
) -> dict[int, bool]:
    """`send_digest` of several groups: each claimed, then read a part at a time
    (service.digest_parts); a part's messages go out while the next part is read."""
    repo, config = _services(application)
    infos = await repo.chats(chat_ids)
    settings = {c: service.settings_for(config, c, infos.get(c)) for c in chat_ids}
    due: dict[int, date] = {}
    for chat_id in chat_ids:
        info, day = infos.get(chat_id), service.digest_day(settings[chat_id], now)
        if info is None or info.tracking_start_utc is None:
            continue
        if day < metrics.local_day(info.tracking_start_utc, settings[chat_id].tz):
            continue  # nothing was tracked that day
        if await repo.claim(chat_id, "digest", "", day.isoformat(), OWNER, now):
            due[chat_id] = day
    sent = dict.fromkeys(chat_ids, False)
    sending: list[asyncio.Task[None]] = []
    unread = set(due)
    try:
        async for part in service.digest_parts(repo, config, list(due), now):
            for chat_id, result in part.items():
                unread.discard(chat_id)
                one = _send_one(application, infos[chat_id], due[chat_id], result, now, sent)
                sending.append(asyncio.create_task(one))
    finally:
        for chat_id in unread:  # not read: released for a later try
            await repo.finish_claim(
                chat_id, "digest", "", due[chat_id].isoformat(), utcnow(), sent=False
            )
        failed = [
            r for r in await asyncio.gather(*sending, return_exceptions=True) if r is not None
        ]
    if failed:
        raise failed[0]
    return sent


async def _send_one(
    application: Application[Any, Any, Any, Any, Any, Any],
    info: ChatInfo,
    day: date,
    result: service.Digest,
    now: datetime,
    sent: dict[int, bool],
) -> None:
    repo, config = _services(application)
    chat_id, settings = info.chat_id, result.settings
    try:
        title = info.title or str(chat_id)
        notes = await _quality_notes(application, repo, chat_id, result, now)
        text = reports.digest_text(
            result.report,
            settings.language,
            title,
            result.net,
            result.changes,
            notes,
            top_source=result.top_source,
        )
        chart = None
        if settings.digest_chart:
            series, target = await service.metric_series(
                repo, config, chat_id, "retention_day1", 14, now
            )
            chart = charts.trend_png("retention_day1", series, target, settings.language, title)
        sent[chat_id] = await _deliver(application, repo, chat_id, settings, text, chart)
    finally:
        await repo.finish_claim(
            chat_id, "digest", "", day.isoformat(), utcnow(), sent=sent[chat_id]
        )


async def _quality_notes(
    application: Application[Any, Any, Any, Any, Any, Any],
    repo: Repo,
    chat_id: int,
    result: service.Digest,
    now: datetime,
) -> list[str]:
    """Re-read Telegram's member count and admin list (daily, with the digest) and say if
    our head-count (at `now`, when the digest was read) drifted."""
    settings = result.settings
    try:
        count = await application.bot.get_chat_member_count(chat_id)
    except TelegramError:
        return []
    await repo.record_member_count(chat_id, now, count)
    known = await not_members(application.bot, repo, chat_id, settings.hosts, now)
    drift = service.headcount_drift(result.headcount_now, count, len(known))
    if drift is None:
        return []
    return [t(settings.language, "note_drift", telegram=drift[0], ours=drift[1])]


async def _deliver(
    application: Application[Any, Any, Any, Any, Any, Any],
    repo: Repo,
    chat_id: int,
    settings: GroupSettings,
    text: str,
    chart: bytes | None,
) -> bool:
    bot = application.bot
    if settings.digest_to == "admins":
        targets = sorted(await repo.admin_hosts(chat_id))
    elif settings.digest_to == "group":
        targets = [chat_id]
    else:
        targets = [int(settings.digest_to)]
    delivered = 0
    for target in targets:
        try:
            await bot.send_message(target, fit(text))
            if chart is not None:
                await bot.send_photo(target, chart)
            delivered += 1
        except Forbidden:  # an admin who never started the bot: nothing to retry
            log.info("chat %s: digest recipient %s has not started the bot", chat_id, target)
    return delivered > 0 or settings.digest_to == "admins"


async def send_alerts(
    application: Application[Any, Any, Any, Any, Any, Any], chat_id: int, now: datetime
) -> int:
    """Post one alert per breached (metric, period), never twice; returns how many were sent."""
    repo, config = _services(application)
    settings = await service.group_settings(repo, config, chat_id)
    targets = await service.targets_in_force(repo, settings, chat_id)
    if not targets:
        return 0
    today = metrics.local_day(now, settings.tz)
    data = await service.load_group(
        repo, config, chat_id, today - timedelta(days=40), today, now=now
    )
    sent = 0
    for breach in alerts.breaches(data, targets, now):
        if not await repo.claim(chat_id, "alert", breach.metric, breach.period, OWNER, now):
            continue
        ok = False
        try:
            text = fit(alert_text(breach, settings.language))
            await application.bot.send_message(chat_id, text)
            ok = True
            sent += 1
        except TelegramError as exc:
            log.warning(
                "chat %s: alert not sent (%s), will retry", chat_id, exc.__class__.__name__
            )
        finally:
            await repo.finish_claim(
                chat_id, "alert", breach.metric, breach.period, utcnow(), sent=ok
            )
    return sent


def alert_text(breach: alerts.Breach, lang: str) -> str:
    period_key = "alert_period_cohort" if breach.is_cohort else "alert_period_range"
    return t(
        lang,
        "alert",
        metric=reports.metric_label(lang, breach.metric),
        value=reports.pct(breach.value),
        target=f"{breach.target * 100:g}%",
        gap=f"{(breach.target - breach.value) * 100:.1f}",
        period=t(lang, period_key, period=breach.period),
        sample=breach.sample,
    )
