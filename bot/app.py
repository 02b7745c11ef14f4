"""Composition root: build_application(config) wires handlers, storage and the rate limiter."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from telegram import BotCommand, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import schedule
from bot.config import DEFAULT_API_BASE_URL, Config
from bot.context import AppContext, OpsApplication
from bot.ingest import is_transient, note_failure, poll_committed
from bot.network import (
    Reachability,
    StartupStopped,
    bot_api_requests,
    shown_url,
    unless_stopped,
)
from bot.redact import redact_in_logs
from bot.tracking import refresh_all_admins, utcnow
from bot.webhook import start_webhook_server
from handlers import admin, commands, dashboard, insights, membership, messages, permissions
from storage.repo import Repo

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The bot cannot start; the message says what to fix and never holds the token."""


COMMANDS = {
    "en": [
        ("start", "What opsbot does and the set-up checklist"),
        ("help", "What opsbot does and the set-up checklist"),
        ("retention", "Retention of newcomers by join day: /retention [days]"),
        ("active", "Response and interaction rates: /active [days]"),
        ("report", "The daily digest, now: /report [date]"),
        ("trend", "Chart of a metric: /trend <metric> [days]"),
        ("targets", "Targets in force and their current values"),
        ("settarget", "Set or clear a target: /settarget <metric> <value|off> [range]"),
        ("hosts", "List hosts; reply with /hosts add|remove"),
        ("settings", "Timezone, language, digest time and destination"),
        ("export", "CSV of daily metrics and membership events, privately"),
        ("dashboard", "Open the dashboard: charts, cohorts, sources"),
        ("sources", "Where newcomers come from and who stays: /sources [days]"),
        ("funnel", "Newcomer funnel, joined to referred: /funnel [days]"),
        ("referrals", "Members who bring others: /referrals [days]"),
        ("hours", "Heat-map of member messages by hour: /hours [days]"),
        ("quiet", "Newcomers who have not spoken yet, privately: /quiet [days]"),
    ],
    "zh": [
        ("start", "功能介绍和设置清单"),
        ("help", "功能介绍和设置清单"),
        ("retention", "按进群日期的新成员留存：/retention [天数]"),
        ("active", "响应率和互动率：/active [天数]"),
        ("report", "立即查看日报：/report [日期]"),
        ("trend", "指标趋势图：/trend <指标> [天数]"),
        ("targets", "当前目标及完成情况"),
        ("settarget", "设定或关闭目标：/settarget <指标> <目标值|off> [范围]"),
        ("hosts", "查看主持人；回复某人消息 /hosts add|remove"),
        ("settings", "时区、语言、日报时间和发送位置"),
        ("export", "私聊导出每日指标和进退群记录（CSV）"),
        ("dashboard", "打开数据仪表盘：图表、留存、来源"),
        ("sources", "新人来源及留存：/sources [天数]"),
        ("funnel", "新人转化漏斗：/funnel [天数]"),
        ("referrals", "转介绍：/referrals [天数]"),
        ("hours", "成员消息时段热力图：/hours [天数]"),
        ("quiet", "私聊查看尚未发言的新人：/quiet [天数]"),
    ],
}


class SendRateLimiter(AIORateLimiter):
    """Telegram's limits are on sending (30 messages/s overall, 20/min per group): reads
    such as getChatAdministrators go straight through, so start-up and the first sight of
    many groups are not queued behind the sending budget."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint.startswith("get"):
            return await callback(*args, **kwargs)
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


def register(application: OpsApplication) -> None:
    """Every handler, in order. Order matters: recorders run first (group -1)."""
    groups = filters.ChatType.GROUPS
    # group -1: recorders; they see every update, commands included, and never stop others
    application.add_handler(
        ChatMemberHandler(membership.on_chat_member, ChatMemberHandler.CHAT_MEMBER), group=-1
    )
    application.add_handler(
        ChatMemberHandler(membership.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
        group=-1,
    )
    application.add_handler(
        MessageHandler(
            groups
            & (filters.StatusUpdate.NEW_CHAT_MEMBERS | filters.StatusUpdate.LEFT_CHAT_MEMBER),
            membership.on_service_members,
        ),
        group=-1,
    )
    application.add_handler(
        MessageHandler(filters.StatusUpdate.MIGRATE, messages.on_migrate), group=-1
    )
    # edited messages are deliberately not handled: edits never count twice (SPEC 4).
    # Service messages never carry text or a caption: the ~47 status checks run only
    # for the other messages (they are most of PTB's per-update cost otherwise).
    application.add_handler(
        MessageHandler(
            groups
            & filters.UpdateType.MESSAGE
            & (filters.TEXT | filters.CAPTION | ~filters.StatusUpdate.ALL),
            messages.on_post,
        ),
        group=-1,
    )
    # group 0: commands
    # before /start: the dashboard's deep link (/start dash_<chat>) in the private chat
    application.add_handler(
        CommandHandler(
            "start",
            dashboard.on_start_dashboard,
            filters=filters.ChatType.PRIVATE & filters.Regex(r"^/start dash_"),
        )
    )
    application.add_handler(CommandHandler(["start", "help"], commands.on_start))
    application.add_handler(CommandHandler("retention", commands.on_retention))
    application.add_handler(CommandHandler("active", commands.on_active))
    application.add_handler(CommandHandler("report", commands.on_report))
    application.add_handler(CommandHandler("targets", commands.on_targets))
    application.add_handler(CommandHandler("trend", commands.on_trend))
    application.add_handler(CommandHandler("settarget", admin.on_settarget))
    application.add_handler(CommandHandler("hosts", admin.on_hosts))
    application.add_handler(CommandHandler("settings", admin.on_settings))
    application.add_handler(CommandHandler("export", admin.on_export))
    application.add_handler(CommandHandler("forgetme", admin.on_forgetme))
    application.add_handler(CommandHandler("purge", admin.on_purge))
    application.add_handler(CommandHandler("dashboard", dashboard.on_dashboard))
    application.add_handler(CommandHandler("sources", insights.on_sources))
    application.add_handler(CommandHandler("funnel", insights.on_funnel))
    application.add_handler(CommandHandler("referrals", insights.on_referrals))
    application.add_handler(CommandHandler("hours", insights.on_hours))
    application.add_handler(CommandHandler("quiet", insights.on_quiet))
    application.add_handler(CallbackQueryHandler(permissions.on_pick, pattern=r"^pick:"))
    application.add_error_handler(on_error)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log one line (no token, no message text) and keep going. A failed update is noted
    for ingest: retried if the database was unavailable, else put on the dead-letter table
    (ingest logs that line, with the handler, once the update is done)."""
    err = context.error
    name = err.__class__.__name__ if err else "unknown"
    if isinstance(update, Update):
        why = "not stored" if is_transient(err) else "failed"
        log.debug("update %s %s: %s", update.update_id, why, name)
    else:
        log.error("failed outside an update: %s", name)
    note_failure(context.application, update, err)


def build_application(config: Config, *, repo: Repo | None = None) -> OpsApplication:
    if not config.token:
        raise ValueError("telegram.token is not set (config file or OPSBOT_TOKEN)")
    redact_in_logs(config.token)
    for name in ("telegram.Bot", "telegram.ext.ExtBot"):
        # their DEBUG lines hold every Bot API answer whole: update JSON, message texts
        logging.getLogger(name).setLevel(logging.INFO)
    reach, request, get_updates_request = bot_api_requests(config)
    builder = (
        ApplicationBuilder()
        .token(config.token)
        .base_url(f"{config.api_base_url}/bot")
        .base_file_url(f"{config.api_base_url}/file/bot")
        .request(request)
        .get_updates_request(get_updates_request)
        .context_types(ContextTypes(context=AppContext))
        .rate_limiter(SendRateLimiter(max_retries=3))
    )
    application: OpsApplication = builder.build()  # type: ignore[assignment]
    application.bot_data["config"] = config
    application.bot_data["reach"] = reach
    if repo is not None:
        application.bot_data["repo"] = repo
    register(application)
    return application


async def _post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Open storage (upgrading the schema), then check what Telegram lets us see."""
    config: Config = application.bot_data["config"]
    if "repo" not in application.bot_data:
        application.bot_data["repo"] = await Repo.open(config.storage_url)
    application.bot_data["owns_repo"] = True
    repo: Repo = application.bot_data["repo"]
    bot = application.bot
    me = await bot.get_me()
    application.bot_data["can_read_all_group_messages"] = bool(me.can_read_all_group_messages)
    if not me.can_read_all_group_messages:
        log.warning("privacy mode is on: @BotFather → Bot Settings → Group Privacy → Turn off")
    await refresh_all_admins(bot, repo, utcnow())
    for lang, cmds in COMMANDS.items():
        try:
            await bot.set_my_commands(
                [BotCommand(c, d) for c, d in cmds], language_code=lang if lang != "en" else None
            )
        except TelegramError as exc:
            log.warning("setMyCommands failed: %s", exc.__class__.__name__)


async def _post_shutdown(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    repo: Repo | None = application.bot_data.get("repo")
    if repo is not None and application.bot_data.get("owns_repo"):
        await repo.close()


async def _start_up(application: OpsApplication, stop: asyncio.Event | None) -> None:
    """getMe, storage, admin lists, commands, then the webhook set or deleted: each call waits
    while the Bot API cannot be reached; Telegram refusing one ends start-up (one line)."""
    config: Config = application.bot_data["config"]
    reach: Reachability = application.bot_data["reach"]
    reach.waiting = True
    try:
        await unless_stopped(_initialize(application), stop)
        await application.start()
        if config.mode == "webhook":
            assert config.webhook_url is not None
            secret = hashlib.sha256(f"opsbot-webhook:{config.token}".encode()).hexdigest()
            application.bot_data["webhook_server"] = start_webhook_server(
                application, config.webhook_listen, config.webhook_port, secret
            )
            await unless_stopped(
                application.bot.set_webhook(
                    config.webhook_url, secret_token=secret, allowed_updates=Update.ALL_TYPES
                ),
                stop,
            )
        else:
            await unless_stopped(application.bot.delete_webhook(drop_pending_updates=False), stop)
        settle_heap()
    except InvalidToken:  # PTB's message quotes the token: never let it reach a log
        # a 404 is InvalidToken too: a server that is no Bot API answers so
        elsewhere = (
            f", and that telegram.api_base_url ({shown_url(config.api_base_url)}) is a Bot API"
            " server"
            if config.api_base_url != DEFAULT_API_BASE_URL
            else ""
        )
        raise StartupError(
            f"Telegram rejected the bot token: check telegram.token or OPSBOT_TOKEN{elsewhere}"
        ) from None
    except TelegramError as exc:
        raise StartupError(
            f"the Bot API at {reach.place} refused to start the bot: "
            + exc.message.replace(config.token or "<token>", "<token>")
        ) from None
    finally:
        reach.waiting = False


GC_THRESHOLDS = (20_000, 20, 10)  # objects allocated between young collections, ...


def settle_heap() -> None:
    """What start-up built lives as long as the process: moved out of the garbage
    collector's way, so that a big report's many short-lived objects do not make it walk
    all of that again and again (gc.freeze). And young collections after 20,000 new
    objects, not 700: a digest round's or report's rows, alive while it runs, were
    otherwise walked by a collection every few groups, and promoted until a full one ran
    (a sixth of a 1,000-group round's time)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _initialize(application: OpsApplication) -> None:
    await application.initialize()
    await _post_init(application)


@asynccontextmanager
async def running(
    application: OpsApplication, *, poll_timeout: int = 10, stop: asyncio.Event | None = None
) -> AsyncIterator[OpsApplication]:
    """Start the application exactly as `opsbot run` does; stop it on exit. `stop` set
    while start-up waits for the Bot API ends it early: StartupStopped."""
    config: Config = application.bot_data["config"]
    try:
        await _start_up(application, stop)
        assert application.updater is not None
        if config.mode == "polling":
            # our own loop instead of the Updater's: confirm only committed updates
            stop_polling = asyncio.Event()
            poller = asyncio.create_task(poll_committed(application, stop_polling, poll_timeout))
        try:
            # jobs after ingest has started: with many groups, scheduling (and the catch-up
            # digests it starts) takes a while, and updates are not kept waiting meanwhile
            await schedule.schedule_all(application)
            yield application
        finally:
            if config.mode == "polling":
                stop_polling.set()
                # cancelled only if still waiting for Telegram: nothing is half-done
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poller, timeout=poll_timeout + 5)
    finally:
        server = application.bot_data.pop("webhook_server", None)
        if server is not None:
            server.stop()
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await _post_shutdown(application)
        await application.shutdown()


async def run_until(application: OpsApplication, stop: asyncio.Event) -> None:
    """Run until `stop` is set, also when it is set while start-up is still waiting."""
    from bot.web.server import dashboard_for

    try:
        async with running(application, stop=stop), dashboard_for(application):
            await stop.wait()
    except StartupStopped:
        log.info("stopped before start-up finished")
