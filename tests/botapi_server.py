"""A small fake Telegram Bot API server on 127.0.0.1 for end-to-end tests.

It answers the methods opsbot calls with JSON shaped as the Bot API documents (checked
against shared/botapi/botapi_subset.json by tests/test_botapi_server.py), serves queued
updates through getUpdates with Telegram's offset semantics, and records every call.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

TOKEN = "123456:TEST-TOKEN"
BOT_ID = 999000


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200


def bot_user() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "opsbot", "username": "opsbot_test_bot"}


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many concurrent sends (benchmarks) must not be refused
    daemon_threads = True


class FakeBotAPI:
    def __init__(self, token: str = TOKEN, port: int = 0) -> None:
        self.token = token
        self.lock = threading.Condition()
        self.updates: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.calls: list[Call] = []
        self.admins: dict[int, list[dict[str, Any]]] = {}
        self.members: dict[tuple[int, int], dict[str, Any]] = {}
        self.member_counts: dict[int, int] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.privacy_mode_off = True
        self.webhook: dict[str, Any] = {}  # setWebhook's url and allowed_updates
        self.max_poll_wait = 0.2
        self.max_batch = 100  # fewer updates per getUpdates make a stream last longer
        self.poll_delay = 0.0  # and so does a slower answer
        # private chats of users who never started the bot: sending there is refused with
        # Telegram's 403 "Forbidden: bot can't initiate conversation with a user"
        self.forbidden_chats: set[int] = set()
        self.menu_button: dict[str, Any] = {"type": "default"}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(10_000)
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---- control ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeBotAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def push(self, *updates: dict[str, Any]) -> list[int]:
        ids = []
        with self.lock:
            for update in updates:
                update = dict(update)
                update.setdefault("update_id", next(self._update_ids))
                ids.append(update["update_id"])
                self.updates.append(update)
            self.lock.notify_all()
        return ids

    def wait_confirmed(self, timeout: float = 10.0) -> bool:
        """True once every pushed update was confirmed by a later getUpdates offset."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.updates:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def calls_of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def fail_next(
        self,
        method: str,
        count: int = 1,
        error_code: int = 429,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        error: dict[str, Any] = {"ok": False, "error_code": error_code}
        if error_code == 429:
            error["description"] = description or f"Too Many Requests: retry after {retry_after}"
            error["parameters"] = {"retry_after": retry_after}
        else:
            error["description"] = description or "Bad Request: failed"
        self.failures.setdefault(method, []).extend([error] * count)

    # ---- methods ---------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        queue = self.failures.get(method)
        if queue:
            error = queue.pop(0)
            return error["error_code"], error
        handler = getattr(self, f"m_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        result = handler(params)
        if isinstance(result, tuple):
            return result
        return 200, {"ok": True, "result": result}

    def m_getMe(self, _: dict[str, Any]) -> Any:
        return bot_user() | {
            "can_join_groups": True,
            "can_read_all_group_messages": self.privacy_mode_off,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def m_getUpdates(self, params: dict[str, Any]) -> Any:
        time.sleep(self.poll_delay)
        offset = int(params.get("offset", 0) or 0)
        limit = int(params.get("limit", 100) or 100)
        wait = min(float(params.get("timeout", 0) or 0), self.max_poll_wait)
        deadline = time.monotonic() + wait
        with self.lock:
            if offset:
                # Telegram forgets every update below a confirmed offset
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                self.confirmed_offset = max(self.confirmed_offset, offset)
                self.lock.notify_all()
            while not self.updates and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return self.updates[: min(limit, self.max_batch)]

    def _ok(self, _: dict[str, Any]) -> Any:
        return True

    m_setMyCommands = m_deleteMyCommands = _ok

    def m_setWebhook(self, params: dict[str, Any]) -> Any:
        # without allowed_updates Telegram keeps the previous setting
        allowed = params.get("allowed_updates", self.webhook.get("allowed_updates"))
        self.webhook = {"url": params["url"]}
        if allowed:
            self.webhook["allowed_updates"] = allowed
        return True

    def m_deleteWebhook(self, _: dict[str, Any]) -> Any:
        self.webhook = {k: v for k, v in self.webhook.items() if k == "allowed_updates"}
        return True

    def m_getWebhookInfo(self, _: dict[str, Any]) -> Any:
        # allowed_updates is absent when it was not given: Telegram's default list, which
        # leaves out chat_member
        info = {"url": "", "has_custom_certificate": False}
        return info | self.webhook | {"pending_update_count": len(self.updates)}

    m_answerCallbackQuery = _ok

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id in self.chats:
            return {
                k: v
                for k, v in self.chats[chat_id].items()
                if k in ("id", "type", "title", "is_forum")
            }
        return {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"} | (
            {"first_name": "User"} if chat_id > 0 else {"title": "Group"}
        )

    def _sent(self, params: dict[str, Any], **content: Any) -> Any:
        chat_id = int(params["chat_id"])
        if chat_id in self.forbidden_chats:
            return 403, {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot can't initiate conversation with a user",
            }
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": bot_user(),
            **content,
        }

    def m_sendMessage(self, params: dict[str, Any]) -> Any:
        refused = web_app_refusal(params, self._chat(int(params["chat_id"]))["type"])
        if refused is not None:
            return refused
        bad = _html_error(str(params.get("text", "")), params.get("parse_mode"))
        if bad:
            return _bad_request(f"can't parse entities: {bad}")
        shown = _after_entities(str(params.get("text", "")), params.get("parse_mode"))
        if not shown.strip():
            return _bad_request("message text is empty")
        if _utf16_len(shown) > 4096:  # as Telegram: 1-4096 characters after entity parsing
            return _bad_request("message is too long")
        markup = params.get("reply_markup") or {}
        buttons = [b for row in markup.get("inline_keyboard", []) for b in row]
        if any(not 1 <= len(b.get("callback_data", "x").encode()) <= 64 for b in buttons):
            return _bad_request("BUTTON_DATA_INVALID")  # callback data: 1-64 bytes
        topic: dict[str, Any] = {}
        thread = params.get("message_thread_id")
        if thread is not None:
            if not self._chat(int(params["chat_id"])).get("is_forum"):
                return _bad_request("message thread not found")
            # sent into a forum topic (the General topic has no thread id)
            topic = {"message_thread_id": int(thread), "is_topic_message": True}
        return self._sent(params, text=shown, **topic)

    def m_setChatMenuButton(self, params: dict[str, Any]) -> Any:
        button = params.get("menu_button") or {"type": "default"}
        if button.get("type") == "web_app":
            url = (button.get("web_app") or {}).get("url", "")
            if not button.get("text") or not url.startswith("https://"):
                return _bad_request("BUTTON_URL_INVALID")
        self.menu_button = button
        return True

    def m_sendPhoto(self, params: dict[str, Any]) -> Any:
        bad = _html_error(str(params.get("caption", "")), params.get("parse_mode"))
        if bad:
            return _bad_request(f"can't parse entities: {bad}")
        caption = _after_entities(str(params.get("caption", "")), params.get("parse_mode"))
        if _utf16_len(caption) > 1024:
            return _bad_request("message caption is too long")
        return self._sent(
            params, photo=[{"file_id": "p1", "file_unique_id": "u1", "width": 960, "height": 540}]
        )

    def m_sendDocument(self, params: dict[str, Any]) -> Any:
        return self._sent(
            params, document={"file_id": "d1", "file_unique_id": "u2", "file_name": "export.csv"}
        )

    def m_getChat(self, params: dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        info = self.chats.get(chat_id, self._chat(chat_id))
        return {
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        } | info

    def m_getChatAdministrators(self, params: dict[str, Any]) -> Any:
        """As Telegram: bots other than the caller only with `return_bots`."""
        admins = self.admins.get(int(params["chat_id"]), [])
        if params.get("return_bots") is True:
            return admins
        return [a for a in admins if not a["user"]["is_bot"] or a["user"]["id"] == BOT_ID]

    def m_getChatMember(self, params: dict[str, Any]) -> Any:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        if (chat_id, user_id) in self.members:
            return self.members[(chat_id, user_id)]
        for admin in self.admins.get(chat_id, []):
            if admin["user"]["id"] == user_id:
                return admin
        if user_id == BOT_ID:
            # about itself: a plain member of a group it is in; no such chat otherwise
            if chat_id in self.chats:
                return {"status": "member", "user": bot_user()}
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: chat not found",
            }
        return {"status": "left", "user": {"id": user_id, "is_bot": False, "first_name": "U"}}

    def m_getChatMemberCount(self, params: dict[str, Any]) -> Any:
        """Everyone in the group, as Telegram counts: the bot itself, admins, bots."""
        return self.member_counts.get(int(params["chat_id"]), 0)

    def count_everyone(self, chat_id: int, others: int) -> int:
        """Set the group's member count as Telegram keeps it: `others` people the fake
        knows nothing about, plus everyone it shows in the group (admins and bot admins,
        getChatMember entries in the group, and the bot itself)."""
        inside = {a["user"]["id"] for a in self.admins.get(chat_id, [])} | {BOT_ID}
        inside |= {
            user
            for (chat, user), m in self.members.items()
            if chat == chat_id
            and (
                m["status"] in ("creator", "administrator", "member")
                or (m["status"] == "restricted" and m["is_member"])
            )
        }
        self.member_counts[chat_id] = others + len(inside)
        return self.member_counts[chat_id]

    # ---- HTTP ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                prefix, _, method = self.path.lstrip("/").partition("/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if prefix != f"bot{api.token}":
                    self._send(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                    return
                params, files = parse_body(self.headers.get("Content-Type", ""), body)
                status, payload = api.answer(method, params)
                with api.lock:
                    api.calls.append(Call(method, params, files, status))
                    api.lock.notify_all()
                self._send(status, payload)

            do_GET = do_POST  # noqa: N815

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # a long poll the client gave up on at shutdown
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        return Handler


def _bad_request(what: str) -> tuple[int, dict[str, Any]]:
    return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {what}"}


def web_app_refusal(params: dict[str, Any], chat_type: str) -> tuple[int, dict[str, Any]] | None:
    """Telegram's answer to web_app inline buttons outside a private chat (they are allowed
    only there: 400 BUTTON_TYPE_INVALID), and to a Mini App URL that is not HTTPS."""
    markup = params.get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if "web_app" not in button:
                continue
            if chat_type != "private":
                return _bad_request("BUTTON_TYPE_INVALID")
            url = button["web_app"].get("url", "")
            if not url.startswith("https://"):
                return _bad_request(
                    f"inline keyboard button Web App URL '{url}' is invalid: "
                    "Only HTTPS links are allowed"
                )
    return None


def _after_entities(text: str, parse_mode: str | None) -> str:
    """The text Telegram shows: HTML tags parsed away, entities unescaped."""
    if parse_mode == "HTML":
        return html.unescape(re.sub(r"<[^>]*>", "", text))
    return text


HTML_TAGS = frozenset(
    [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ]
)
HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)>")


def _html_error(text: str, parse_mode: str | None) -> str | None:
    """What Telegram refuses in parse_mode HTML: tags it does not support, unbalanced
    tags, a bare `<` or `>`, or `&` that starts no entity it knows."""
    if parse_mode != "HTML":
        return None
    open_tags: list[str] = []
    pos = 0
    for m in HTML_TAG.finditer(text):
        gap = text[pos : m.start()]
        if "<" in gap or ">" in gap:
            return f"Unsupported start tag at byte offset {len(text[:pos].encode())}"
        pos = m.end()
        closing, name = m.group(1), m.group(2).lower()
        if name not in HTML_TAGS:
            return f'Unsupported start tag "{name}"'
        if closing:
            if not open_tags or open_tags.pop() != name:
                return f'Unmatched end tag "{name}"'
        else:
            open_tags.append(name)
    if "<" in text[pos:] or ">" in text[pos:]:
        return f"Unsupported start tag at byte offset {len(text[:pos].encode())}"
    if open_tags:
        return f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"'
    for i, ch in enumerate(text):
        if ch == "&" and not HTML_ENTITY.match(text, i):
            return f"Character entity expected at byte offset {len(text[:i].encode())}"
    return None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode(value: str) -> Any:
    """PTB sends non-string parameters JSON-encoded inside form fields."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    if not body:
        return {}, {}
    if content_type.startswith("application/json"):
        return json.loads(body), {}
    if content_type.startswith("multipart/form-data"):
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                files[str(name)] = payload
            else:
                params[str(name)] = _decode(payload.decode())
        return params, files
    return {k: _decode(v) for k, v in parse_qsl(body.decode(), keep_blank_values=True)}, {}
