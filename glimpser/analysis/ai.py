"""The vision AI: any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp).

Three uses, one client:

- describe(): a snapshot → title, description, objects, threat level, confidence (JSON);
- ask(): a snapshot + a yes/no question from a rule → match, confidence, reason (JSON);
- summarise(): text in, text out (summaries of time windows).

Cost control lives here so that no caller can forget it: a per-stream daily token budget
counted in Redis (shared by every worker), a cache keyed by the picture's perceptual hash,
timeouts, and retries with backoff on timeouts, connection errors, 408, 409, 429 and 5xx
(honouring Retry-After), which the `openai` package does itself (`max_retries`); the attempts
it made are read back from each request's retry count. Every call, cache hit or refusal is
recorded as an AICall row; the API key and the image are never logged nor put into an error
message.

A malformed answer is a failure (AIError), never something filled in: callers fail open and
show the error instead of a description.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import openai
import peewee
import redis
from PIL import Image, ImageOps, UnidentifiedImageError

from glimpser import metrics
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.logs import redact
from glimpser.models import AICall

log = logging.getLogger(__name__)

# The openai package logs whole request options (with the image) at DEBUG; keep it quieter
# than that whatever the application's log level is.
logging.getLogger("openai").setLevel(logging.INFO)

PLACEHOLDER_KEY = "not-needed"  # Ollama, vLLM and llama.cpp accept any key
RETRY_COUNT_HEADER = "x-stainless-retry-count"  # set by the openai package on every request
JPEG_QUALITY = 85

TITLE_MAX = 120
DESCRIPTION_MAX = 2000
REASON_MAX = 500
OBJECTS_MAX = 20
OBJECT_MAX = 40
ERROR_MAX = 500

DESCRIBE_SYSTEM = (
    "You look at one snapshot from a monitoring camera, video stream or website and answer "
    "with a single JSON object and nothing else, with exactly these keys:\n"
    '- "title": a short headline of what is seen (at most 8 words);\n'
    '- "description": one to three plain sentences describing the scene and anything '
    "happening;\n"
    '- "objects": a list of the notable things visible, as lowercase singular nouns '
    '(e.g. ["person", "car", "dog"]), empty if none;\n'
    '- "threat": 0 if the scene looks normal, 1 if something is unusual, 2 if it looks like a '
    "threat (intruder, fire, break-in, accident);\n"
    '- "confidence": how sure you are of the description, from 0 to 1.\n'
    "Describe only what is visible; do not guess."
)

ASK_SYSTEM = (
    "You look at one snapshot from a monitoring camera, video stream or website and answer a "
    "yes/no question about it with a single JSON object and nothing else, with exactly these "
    'keys: "match": true if the answer is yes, false if no; "confidence": how sure you are, '
    'from 0 to 1; "reason": one short sentence saying what in the picture decided it. '
    "Judge only what is visible."
)


class AIError(Exception):
    """The AI could not answer (after retries); str(exc) is a clear operator-facing reason."""


class AIBudgetExceeded(AIError):
    """The stream's daily token budget is used up; no request was sent."""


@dataclass(frozen=True)
class Description:
    """What the model saw in a snapshot."""

    title: str
    description: str
    objects: list[str]
    # 0 normal, 1 unusual, 2 threat; None when the model did not say (never guessed as "normal")
    threat: int | None
    confidence: float | None  # None when the model did not say
    cached: bool = False

    def as_dict(self) -> dict:
        """The stored form (Snapshot.ai), without the cache flag."""
        return {
            "title": self.title,
            "description": self.description,
            "objects": list(self.objects),
            "threat": self.threat,
            "confidence": self.confidence,
        }

    @classmethod
    def from_cache(cls, data: dict) -> Description:
        """A cached description (as_dict's form); KeyError, TypeError or ValueError when the
        entry is not one."""
        return cls(
            title=data["title"],
            description=data["description"],
            objects=list(data["objects"]),
            threat=None if data["threat"] is None else int(data["threat"]),
            confidence=None if data["confidence"] is None else float(data["confidence"]),
            cached=True,
        )


@dataclass(frozen=True)
class Answer:
    """The model's answer to a rule's yes/no question about a snapshot."""

    match: bool
    confidence: float
    reason: str
    cached: bool = False

    def as_dict(self) -> dict:
        """The cached form, without the cache flag."""
        return {"match": self.match, "confidence": self.confidence, "reason": self.reason}

    @classmethod
    def from_cache(cls, data: dict) -> Answer:
        """A cached answer (as_dict's form); KeyError, TypeError or ValueError when the entry
        is not one."""
        return cls(
            match=bool(data["match"]),
            confidence=float(data["confidence"]),
            reason=str(data["reason"]),
            cached=True,
        )


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0
    total: int = 0


@dataclass
class _Outcome:
    content: str
    usage: _Usage
    attempts: int


class _CallFailed(Exception):
    """A request failed for good; carries what the usage record needs."""

    def __init__(self, message: str, attempts: int, usage: _Usage | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.usage = usage or _Usage()


# --- parsing ----------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _json_object(content: str) -> dict:
    """The JSON object in a model's answer: fences stripped, surrounding prose tolerated."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise AIError(
                f"the model's answer was not the JSON asked for: {_short(content, 200)!r}"
            ) from None
        try:
            value = json.loads(text[start : end + 1])
        except ValueError:
            raise AIError(
                f"the model's answer was not the JSON asked for: {_short(content, 200)!r}"
            ) from None
    if not isinstance(value, dict):
        raise AIError(
            f"the model's answer was not the JSON asked for (not an object): "
            f"{_short(content, 200)!r}"
        )
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
        return number / 100 if value.strip().endswith("%") else number
    return None


def _confidence(value: Any) -> float:
    """0..1; a number above 1 up to 100 is read as a percentage. Absent → 0 (no claim)."""
    number = _number(value)
    if number is None or number != number:  # absent or NaN
        return 0.0
    if 1 < number <= 100:
        number /= 100
    return round(min(1.0, max(0.0, number)), 3)


def _said_confidence(value: Any) -> float | None:
    """A description's confidence, or None when the model gave none (shown as nothing)."""
    number = _number(value)
    if number is None or number != number:
        return None
    return _confidence(number)


_THREAT_WORDS = {"normal": 0, "none": 0, "low": 0, "unusual": 1, "medium": 1, "threat": 2}


def _threat(value: Any) -> int | None:
    """0..2; absent or unreadable → None (not said is not "normal"). Words the prompt uses are
    accepted too."""
    if isinstance(value, str) and value.strip().lower() in _THREAT_WORDS:
        return _THREAT_WORDS[value.strip().lower()]
    number = _number(value)
    if number is None or number != number:
        return None
    return int(min(2, max(0, round(number))))


def _objects(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = re.split(r"[,;\n]", value)
    elif isinstance(value, list):
        items = value
    else:
        items = []
    found: list[str] = []
    for item in items:
        if isinstance(item, dict):  # {"name": "person", ...} from chatty models
            item = item.get("name") or item.get("label") or item.get("object") or ""
        if not isinstance(item, str):
            continue
        name = _short(item.strip().lower(), OBJECT_MAX)
        if name and name not in found:
            found.append(name)
        if len(found) >= OBJECTS_MAX:
            break
    return found


def parse_description(content: str) -> Description:
    """A Description from the model's text; AIError when it is not the JSON asked for."""
    data = _json_object(content)
    title, description = data.get("title"), data.get("description")
    if not isinstance(title, str) or not isinstance(description, str):
        missing = [k for k in ("title", "description") if not isinstance(data.get(k), str)]
        raise AIError(
            f"the model's answer was not the JSON asked for: no {' or '.join(missing)} in "
            f"{_short(content, 200)!r}"
        )
    title, description = _short(title, TITLE_MAX), _short(description, DESCRIPTION_MAX)
    if not title and not description:
        raise AIError("the model's answer was not the JSON asked for: empty title and description")
    return Description(
        title=title or _short(description, TITLE_MAX),
        description=description,
        objects=_objects(data.get("objects")),
        threat=_threat(data.get("threat")),
        confidence=_said_confidence(data.get("confidence")),
    )


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "y", "1", "match"):
            return True
        if text in ("false", "no", "n", "0", "no match"):
            return False
    return None


def parse_answer(content: str) -> Answer:
    """An Answer from the model's text; AIError when `match` is not a clear yes or no."""
    data = _json_object(content)
    match = _boolean(data.get("match"))
    if match is None:
        raise AIError(
            f"the model's answer was not the JSON asked for: no true/false match in "
            f"{_short(content, 200)!r}"
        )
    reason = data.get("reason")
    return Answer(
        match=match,
        confidence=_confidence(data.get("confidence")),
        reason=_short(reason, REASON_MAX) if isinstance(reason, str) else "",
    )


# --- images -----------------------------------------------------------------------------------


def prepare_image(jpeg: bytes, max_px: int) -> bytes:
    """The snapshot as a JPEG whose long side is at most max_px (small ones are sent as they are).

    Fewer pixels cost fewer tokens and less upload time; vision models look at ~512-768 px
    tiles anyway.
    """
    try:
        image = Image.open(io.BytesIO(jpeg))
        width, height = image.size
        if image.format == "JPEG" and max(width, height) <= max_px:
            return jpeg
        if image.format == "JPEG":
            # libjpeg DCT scaling: decode at the smallest power-of-two scale still >= target.
            scale = max_px / max(width, height)
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise AIError(f"the snapshot is not a readable image ({type(exc).__name__})") from None
    image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


# --- the client -------------------------------------------------------------------------------


def _day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _scope(stream_id: int | None) -> str:
    return "all" if stream_id is None else str(int(stream_id))


def _attempts(exc: openai.OpenAIError) -> int:
    """How many requests the openai package sent before failing: the last one's retry count,
    plus one."""
    request = getattr(exc, "request", None)
    try:
        return int(request.headers.get(RETRY_COUNT_HEADER, "0")) + 1 if request else 1
    except ValueError:
        return 1


class AIClient:
    """One configured OpenAI-compatible server, with budget, cache, retries and usage records."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.connection = connection
        self.model = settings.ai_model
        self._key = settings.ai_api_key
        self._base_url = redact(settings.ai_base_url)
        self._client = openai.OpenAI(
            base_url=settings.ai_base_url,
            api_key=settings.ai_api_key or PLACEHOLDER_KEY,
            timeout=float(settings.ai_timeout),
            max_retries=settings.ai_max_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings, connection: redis.Redis) -> AIClient | None:
        """The client, or None when AI is not configured (nothing then pretends to describe)."""
        if not settings.ai_configured:
            return None
        return cls(settings, connection)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # public API

    def describe(
        self,
        jpeg: bytes,
        *,
        stream_id: int | None,
        prompt: str = "",
        phash: str = "",
        budget: int | None = None,
    ) -> Description:
        """Describe a snapshot; a cached description of the same-looking picture costs nothing.

        A stream without a prompt of its own gets the default one (GLIMPSER_AI_DEFAULT_PROMPT).
        """
        prompt = (prompt or "").strip() or self.settings.ai_default_prompt.strip()
        user_text = "Describe this snapshot as JSON."
        if prompt:
            user_text += f"\nInstructions for this stream: {prompt}"
        return self._vision_call(
            "describe",
            jpeg,
            DESCRIBE_SYSTEM,
            user_text,
            stream_id=stream_id,
            budget=budget,
            cache_key=self._cache_key("describe", stream_id, phash, prompt),
            parse=parse_description,
            result_type=Description,
        )

    def ask(
        self,
        jpeg: bytes,
        question: str,
        *,
        stream_id: int | None,
        phash: str = "",
        budget: int | None = None,
    ) -> Answer:
        """Ask a yes/no question about a snapshot (natural-language rules)."""
        question = (question or "").strip()
        if not question:
            raise AIError("no question to ask the AI")
        return self._vision_call(
            "rule",
            jpeg,
            ASK_SYSTEM,
            f"Question: {question}\nAnswer as JSON.",
            stream_id=stream_id,
            budget=budget,
            cache_key=self._cache_key("rule", stream_id, phash, question),
            parse=parse_answer,
            result_type=Answer,
        )

    def summarise(
        self,
        instructions: str,
        material: str,
        *,
        stream_id: int | None = None,
        budget: int | None = None,
    ) -> str:
        """Text in, text out: the model's summary of the material (stripped, never empty)."""
        started = time.monotonic()
        self._check_budget("summary", stream_id, budget, started)
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": material},
        ]
        outcome = self._request("summary", stream_id, messages, json_mode=False, started=started)
        text = outcome.content.strip()
        if not text:
            self._fail(
                "summary",
                stream_id,
                started,
                outcome.attempts,
                outcome.usage,
                "the model's answer was empty",
            )
        self._record("summary", stream_id, started, outcome.attempts, outcome.usage)
        return text

    def test_connection(self) -> str:
        """One short text request (Admin → Settings → Test connection): the model's answer, or
        AIError with the exact reason (the key scrubbed). Not counted against any budget."""
        messages = [{"role": "user", "content": "Reply with one short sentence: are you there?"}]
        try:
            outcome = self._send(messages, json_mode=False)
        except _CallFailed as failed:
            raise AIError(str(failed)) from None
        return self._scrub(_short(outcome.content.strip(), 500)) or "(an empty answer)"

    def tokens_used_today(self, stream_id: int | None) -> int:
        """Tokens counted against this stream's budget today (UTC); None = calls for no stream."""
        raw = self.connection.get(self._budget_key(stream_id))
        return int(raw) if raw else 0

    # internals

    def _budget_key(self, stream_id: int | None) -> str:
        return f"glimpser:ai:tokens:{_scope(stream_id)}:{_day()}"

    def _cache_key(self, purpose: str, stream_id: int | None, phash: str, text: str) -> str | None:
        if not phash or self.settings.ai_cache_seconds <= 0:
            return None
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        model = hashlib.sha256(self.model.encode()).hexdigest()[:12]
        return f"glimpser:ai:cache:{purpose}:{_scope(stream_id)}:{phash}:{digest}:{model}"

    def _check_budget(
        self, purpose: str, stream_id: int | None, budget: int | None, started: float
    ) -> None:
        limit = self.settings.ai_daily_token_budget if budget is None else int(budget)
        if limit <= 0:
            return
        if self.tokens_used_today(stream_id) >= limit:
            message = f"daily AI token budget of {limit} used up for this stream"
            self._record(purpose, stream_id, started, 0, _Usage(), error=message)
            raise AIBudgetExceeded(message)

    def _vision_call(
        self,
        purpose: str,
        jpeg: bytes,
        system: str,
        user_text: str,
        *,
        stream_id: int | None,
        budget: int | None,
        cache_key: str | None,
        parse: Any,
        result_type: type[Description] | type[Answer],
    ) -> Any:
        """One picture and a prompt to the model, `parse`d into `result_type`; a cached result
        (by `cache_key`) of the same-looking picture costs nothing."""
        started = time.monotonic()
        if cache_key:
            raw = self.connection.get(cache_key)
            if raw:
                try:
                    result = result_type.from_cache(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    self.connection.delete(cache_key)  # unreadable entry: ask again
                else:
                    self._record(purpose, stream_id, started, 0, _Usage(), cached=True)
                    return result
        self._check_budget(purpose, stream_id, budget, started)
        try:
            image = prepare_image(jpeg, self.settings.ai_image_max_px)
        except AIError as exc:
            self._record(purpose, stream_id, started, 0, _Usage(), error=str(exc))
            raise
        url = "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")
        messages = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": user_text},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        ]
        outcome = self._request(purpose, stream_id, messages, json_mode=True, started=started)
        try:
            result = parse(outcome.content)
        except AIError as exc:
            self._fail(purpose, stream_id, started, outcome.attempts, outcome.usage, str(exc))
        self._record(purpose, stream_id, started, outcome.attempts, outcome.usage)
        if cache_key:
            self.connection.set(
                cache_key, json.dumps(result.as_dict()), ex=self.settings.ai_cache_seconds
            )
        return result

    def _fail(
        self,
        purpose: str,
        stream_id: int | None,
        started: float,
        attempts: int,
        usage: _Usage,
        message: str,
    ) -> NoReturn:
        self._record(purpose, stream_id, started, attempts, usage, error=message)
        raise AIError(message)

    def _request(
        self,
        purpose: str,
        stream_id: int | None,
        messages: list[dict],
        *,
        json_mode: bool,
        started: float,
    ) -> _Outcome:
        """Send with retries; count the tokens; raise AIError (recorded) when it fails for good."""
        try:
            outcome = self._send(messages, json_mode=json_mode)
        except _CallFailed as failed:
            self._count(stream_id, failed.usage)
            self._record(
                purpose, stream_id, started, failed.attempts, failed.usage, error=str(failed)
            )
            raise AIError(str(failed)) from None
        self._count(stream_id, outcome.usage)
        return outcome

    def _count(self, stream_id: int | None, usage: _Usage) -> None:
        if usage.total <= 0:
            return
        key = self._budget_key(stream_id)
        pipe = self.connection.pipeline()
        pipe.incrby(key, usage.total)
        pipe.expire(key, 2 * 86400)
        pipe.execute()

    def _send(self, messages: list[dict], *, json_mode: bool) -> _Outcome:
        """One completion; the openai package retries what is worth retrying (max_retries)."""
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                **extra,
            )
        except openai.APITimeoutError as exc:
            error = f"the AI server did not answer within {self.settings.ai_timeout} s"
            attempts = _attempts(exc)
        except openai.APIConnectionError as exc:
            error = f"cannot reach the AI server at {self._base_url}: {self._cause(exc)}"
            attempts = _attempts(exc)
        except openai.APIStatusError as exc:
            error = self._status_message(exc)
            attempts = _attempts(exc)
        except openai.OpenAIError as exc:
            raise _CallFailed(
                self._scrub(f"the AI server's answer could not be read: {exc}"),
                _attempts(exc),
            ) from None
        else:
            attempts = raw.retries_taken + 1
            try:
                response = raw.parse()
            except (openai.OpenAIError, ValueError) as exc:  # a 200 that is not a completion
                raise _CallFailed(
                    self._scrub(f"the AI server's answer could not be read: {exc}"), attempts
                ) from None
            return self._outcome(response, attempts)
        raise _CallFailed(self._with_attempts(error, attempts), attempts)

    def _outcome(self, response: Any, attempts: int) -> _Outcome:
        usage = _Usage()
        raw_usage = getattr(response, "usage", None)
        if raw_usage is not None:
            usage.prompt = int(getattr(raw_usage, "prompt_tokens", 0) or 0)
            usage.completion = int(getattr(raw_usage, "completion_tokens", 0) or 0)
            usage.total = int(getattr(raw_usage, "total_tokens", 0) or 0) or (
                usage.prompt + usage.completion
            )
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        content = getattr(message, "content", None) if message is not None else None
        if not isinstance(content, str):
            raise _CallFailed("the AI server's answer had no message content", attempts, usage)
        return _Outcome(content, usage, attempts)

    @staticmethod
    def _with_attempts(error: str, attempts: int) -> str:
        return f"{error} ({attempts} attempt{'s' if attempts != 1 else ''})"

    def _cause(self, exc: BaseException) -> str:
        cause = exc.__cause__ or exc.__context__
        text = str(cause) if cause is not None and str(cause) else str(exc)
        return self._scrub(_short(text, 200))

    def _status_message(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        detail = ""
        if isinstance(body, dict):
            detail = str(body.get("message") or body.get("error") or "")
        elif isinstance(body, str):
            detail = body
        if not detail:
            detail = exc.response.reason_phrase or ""
        detail = self._scrub(_short(detail, 300))
        status = exc.status_code
        if status == 401 or status == 403:
            what = "the AI server refused the API key"
        elif status == 404:
            what = (
                "the AI server does not know this model or path "
                "(check GLIMPSER_AI_BASE_URL and GLIMPSER_AI_MODEL)"
            )
        elif status == 429:
            what = "the AI server is rate limiting"
        elif status >= 500:
            what = "the AI server failed"
        else:
            what = "the AI server rejected the request"
        return f"{what} (HTTP {status}): {detail}" if detail else f"{what} (HTTP {status})"

    def _scrub(self, text: str) -> str:
        """No API key in any message, even if a server echoes it back."""
        if self._key and len(self._key) >= 4:
            text = text.replace(self._key, "***")
        return redact(text)

    def _record(
        self,
        purpose: str,
        stream_id: int | None,
        started: float,
        attempts: int,
        usage: _Usage,
        *,
        cached: bool = False,
        error: str = "",
    ) -> None:
        """One AICall row (own short transaction) and one log line, for every call."""
        duration_ms = int((time.monotonic() - started) * 1000)
        error = self._scrub(error)[:ERROR_MAX] if error else ""
        row = {
            "stream": stream_id,
            "purpose": purpose,
            "model": self.model[:200],
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": usage.total,
            "ok": not error,
            "cached": cached,
            "attempts": attempts,
            "duration_ms": duration_ms,
            "error": error,
        }
        try:
            try:
                with write_transaction():
                    AICall.create(**row)
            except peewee.IntegrityError:
                # The stream was deleted meanwhile: keep the usage, without the stream.
                with write_transaction():
                    AICall.create(**{**row, "stream": None})
        except peewee.PeeweeException as exc:
            log.warning("could not record an AI call", extra={"error": str(exc)[:200]})
        outcome = "cached" if cached else ("ok" if not error else "failed")
        metrics.record_ai_call(self.connection, stream_id, purpose, outcome, usage.total)
        # Field names avoid "token": the JSON log formatter masks such keys as secrets.
        (log.info if not error else log.warning)(
            f"AI {purpose} {outcome}: {usage.total} tokens, {attempts} attempts",
            extra={
                "purpose": purpose,
                "stream_id": stream_id,
                "model": self.model,
                "used": usage.total,
                "attempts": attempts,
                "outcome": outcome,
                "duration_ms": duration_ms,
                "error": error,
            },
        )
