"""The AI client against the loopback OpenAI-compatible server, real Redis and a real database:
what is sent, tolerant parsing, malformed answers, retries (500, 429 + Retry-After, timeouts),
no retry on 4xx, budget, cache, usage records, and no API key in errors or logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import peewee
import pytest
import redis as redis_lib
from PIL import Image

from glimpser.analysis.ai import (
    AIBudgetExceeded,
    AIClient,
    AIError,
    Description,
)
from glimpser.config import load_settings
from glimpser.db import database, init_database, migrate
from glimpser.logs import JSONFormatter
from glimpser.models import AICall, Stream
from tests.helpers import free_port
from tests.openai_server import FakeOpenAI, Reply

API_KEY = "sk-test-very-secret-0123456789"
GOOD = {
    "title": "A person at the gate",
    "description": "A person in a red coat stands at the closed gate.",
    "objects": ["person", "gate"],
    "threat": 1,
    "confidence": 0.8,
}


def make_jpeg(width: int = 1600, height: int = 900) -> bytes:
    """A textured JPEG (noise), so that its encoded bytes are distinctive."""
    noise = Image.effect_noise((width, height), 64)
    image = Image.merge("RGB", (noise, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


BIG_JPEG = make_jpeg()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[peewee.Database]:
    handle = init_database(f"sqlite:///{tmp_path / 'glimpser.db'}")
    migrate(handle)
    with database.connection_context():
        yield handle


@pytest.fixture
def stream(db) -> Stream:
    return Stream.create(name="gate", kind="http_image", config={"url": "http://192.0.2.1/a.jpg"})


@pytest.fixture
def make_client(tmp_path: Path, redis_url: str, redis_client: redis_lib.Redis):
    """An AIClient for the loopback server (or any base URL), with extra GLIMPSER_* settings."""
    clients: list[AIClient] = []

    def build(base_url: str, **extra: str) -> AIClient:
        env = {
            "GLIMPSER_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSER_REDIS_URL": redis_url,
            "GLIMPSER_AI_BASE_URL": base_url,
            "GLIMPSER_AI_API_KEY": API_KEY,
            "GLIMPSER_AI_MODEL": "test-vision",
            "GLIMPSER_AI_IMAGE_MAX_PX": "320",
            **extra,
        }
        client = AIClient.from_settings(load_settings(env), redis_client)
        assert client is not None
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def calls() -> list[AICall]:
    return list(AICall.select().order_by(AICall.id))


# --- what is sent, what comes back ------------------------------------------------------------


def test_describe_sends_the_downscaled_image_as_json_request(
    make_client, openai_server: FakeOpenAI, stream: Stream
) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_json(GOOD, prompt_tokens=300, completion_tokens=40)

    result = ai.describe(BIG_JPEG, stream_id=stream.id, prompt="Say if the gate is open")

    assert result == Description(
        title="A person at the gate",
        description="A person in a red coat stands at the closed gate.",
        objects=["person", "gate"],
        threat=1,
        confidence=0.8,
    )
    assert result.as_dict() == GOOD
    [request] = openai_server.requests
    assert request.body["model"] == "test-vision"
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert "Say if the gate is open" in request.text
    assert '"threat"' in request.text  # the system prompt describes the JSON answer
    [image] = request.images
    sent = Image.open(io.BytesIO(image))
    assert sent.format == "JPEG"
    assert sent.size == (320, 180)  # 1600x900 scaled to a long side of 320

    [call] = calls()
    assert (call.stream_id, call.purpose, call.model) == (stream.id, "describe", "test-vision")
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (300, 40, 340)
    assert call.ok and not call.cached and call.attempts == 1 and call.error == ""
    assert ai.tokens_used_today(stream.id) == 340
    assert ai.tokens_used_today(None) == 0


def test_small_jpeg_is_sent_as_it_is(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    small = make_jpeg(200, 100)
    openai_server.reply_json(GOOD)
    ai.describe(small, stream_id=stream.id)
    assert openai_server.requests[0].images == [small]


def test_fenced_json_and_loose_values_are_accepted(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url)
    answer = {
        "title": "Delivery " * 40,
        "description": "A van  stops\nin front.",
        "objects": ["Van", " person ", "van", 3, "PERSON"],
        "threat": "7",
        "confidence": "85%",
    }
    openai_server.reply_text("```json\n" + json.dumps(answer) + "\n```")

    result = ai.describe(BIG_JPEG, stream_id=stream.id)

    assert result.objects == ["van", "person"]
    assert result.threat == 2  # clamped
    assert result.confidence == 0.85
    assert result.description == "A van stops in front."
    assert result.title.startswith("Delivery Delivery") and len(result.title) <= 120


@pytest.mark.parametrize(
    "content",
    [
        "I see a person at the gate.",
        json.dumps({"title": "Only a title"}),
        json.dumps(["title", "description"]),
    ],
)
def test_malformed_answer_is_a_recorded_failure(
    make_client, openai_server: FakeOpenAI, stream, content: str
) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_text(content)

    with pytest.raises(AIError, match="the model's answer was not the JSON asked for"):
        ai.describe(BIG_JPEG, stream_id=stream.id)

    [call] = calls()
    assert not call.ok and "not the JSON asked for" in call.error
    assert call.total_tokens == 120  # the tokens were spent all the same
    assert ai.tokens_used_today(stream.id) == 120


def test_unreadable_snapshot_sends_nothing(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    with pytest.raises(AIError, match="not a readable image"):
        ai.describe(b"not a jpeg", stream_id=stream.id)
    assert openai_server.requests == []
    assert not calls()[0].ok


def test_ask_parses_match_confidence_and_reason(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_json({"match": True, "confidence": 0.9, "reason": "The door is up."})
    openai_server.reply_json({"match": "no", "confidence": "0.6", "reason": "Closed."})
    openai_server.reply_json({"confidence": 0.6, "reason": "Cannot tell."})

    first = ai.ask(BIG_JPEG, "Is the garage door open?", stream_id=stream.id)
    second = ai.ask(BIG_JPEG, "Is the garage door open?", stream_id=stream.id)
    with pytest.raises(AIError, match="no true/false match"):
        ai.ask(BIG_JPEG, "Is the garage door open?", stream_id=stream.id)

    assert (first.match, first.confidence, first.reason) == (True, 0.9, "The door is up.")
    assert (second.match, second.confidence, second.reason) == (False, 0.6, "Closed.")
    request = openai_server.requests[0]
    assert "Is the garage door open?" in request.text
    assert request.body["response_format"] == {"type": "json_object"}
    assert Image.open(io.BytesIO(request.images[0])).size == (320, 180)
    assert [(c.purpose, c.ok) for c in calls()] == [("rule", True), ("rule", True), ("rule", False)]


def test_summarise_returns_the_text(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_text("  Quiet hour; one delivery at 10:12.\n")
    openai_server.reply_text("   ")

    text = ai.summarise("Summarise these events.", "10:12 van at the gate", stream_id=stream.id)
    with pytest.raises(AIError, match="empty"):
        ai.summarise("Summarise these events.", "nothing", stream_id=None)

    assert text == "Quiet hour; one delivery at 10:12."
    request = openai_server.requests[0]
    assert "response_format" not in request.body
    assert request.images == []
    assert "Summarise these events." in request.text and "10:12 van at the gate" in request.text
    assert [(c.purpose, c.ok, c.stream_id) for c in calls()] == [
        ("summary", True, stream.id),
        ("summary", False, None),
    ]
    assert ai.tokens_used_today(None) == 120


# --- retries ----------------------------------------------------------------------------------


def test_server_error_is_retried(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_error(500, "overloaded")
    openai_server.reply_json(GOOD)

    assert ai.describe(BIG_JPEG, stream_id=stream.id).title == GOOD["title"]

    assert len(openai_server.requests) == 2
    [call] = calls()
    assert call.ok and call.attempts == 2


def test_429_waits_for_retry_after(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_error(429, "slow down", headers={"Retry-After": "1"})
    openai_server.reply_json(GOOD)

    ai.describe(BIG_JPEG, stream_id=stream.id)

    first, second = openai_server.requests
    assert second.at - first.at >= 0.9  # the client honoured Retry-After: 1
    assert calls()[0].attempts == 2


def test_rate_limit_that_persists_fails_after_the_retries(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url, GLIMPSER_AI_MAX_RETRIES="1")
    for _ in range(2):
        openai_server.reply_error(429, "quota", headers={"Retry-After": "0"})

    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    assert str(caught.value) == "the AI server is rate limiting (HTTP 429): quota (2 attempts)"
    assert len(openai_server.requests) == 2


def test_bad_request_is_not_retried(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_error(400, "image_url is not supported by this model")

    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    assert "HTTP 400" in str(caught.value)
    assert "image_url is not supported by this model" in str(caught.value)
    assert len(openai_server.requests) == 1
    [call] = calls()
    assert not call.ok and call.attempts == 1 and "HTTP 400" in call.error


def test_refused_key_is_not_retried_nor_echoed(
    make_client, openai_server: FakeOpenAI, stream, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    ai = make_client(openai_server.url)
    openai_server.reply_error(401, f"Incorrect API key provided: {API_KEY}")

    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    message = str(caught.value)
    assert message.startswith("the AI server refused the API key (HTTP 401)")
    assert API_KEY not in message and "***" in message
    assert API_KEY not in calls()[0].error
    assert len(openai_server.requests) == 1
    _assert_no_secrets_logged(caplog)


def test_stalled_server_times_out_after_retries(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url, GLIMPSER_AI_TIMEOUT="1", GLIMPSER_AI_MAX_RETRIES="1")
    for _ in range(2):
        openai_server.reply(replace(Reply.json(GOOD), delay=3))

    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    assert str(caught.value) == "the AI server did not answer within 1 s (2 attempts)"
    assert len(openai_server.requests) == 2
    [call] = calls()
    assert not call.ok and call.attempts == 2 and "did not answer" in call.error


def test_unreachable_server(make_client, stream) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    ai = make_client(url, GLIMPSER_AI_MAX_RETRIES="0")
    with pytest.raises(AIError, match="cannot reach the AI server at http://127.0.0.1:"):
        ai.describe(BIG_JPEG, stream_id=stream.id)
    assert calls()[0].attempts == 1


def test_retry_after_as_a_date_or_in_milliseconds_is_honoured(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url)
    wall, mono = time.time(), time.monotonic()
    until = int(wall) + 4  # an HTTP date has whole seconds
    openai_server.reply_error(503, "busy", headers={"Retry-After": formatdate(until, usegmt=True)})
    openai_server.reply_error(429, "slow down", headers={"retry-after-ms": "1500"})
    openai_server.reply_json(GOOD)

    ai.describe(BIG_JPEG, stream_id=stream.id)

    first, second, third = openai_server.requests
    asked = until - (wall + first.at - mono)  # the wait the date meant when the server answered
    assert second.at - first.at >= asked - 0.05
    assert third.at - second.at >= 1.4
    # The openai package retried (it numbers its tries), and every try is counted.
    retry_counts = [
        {k.lower(): v for k, v in r.headers.items()}.get("x-stainless-retry-count")
        for r in openai_server.requests
    ]
    assert retry_counts == ["0", "1", "2"]
    assert calls()[0].attempts == 3


def test_a_retry_that_gets_a_bad_request_stops_and_counts_both(
    make_client, openai_server: FakeOpenAI, stream
) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_error(500, "overloaded")
    openai_server.reply_error(400, "bad image")

    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    assert str(caught.value) == (
        "the AI server rejected the request (HTTP 400): bad image (2 attempts)"
    )
    assert len(openai_server.requests) == 2
    assert calls()[0].attempts == 2


# --- cost control -----------------------------------------------------------------------------


def test_budget_exhaustion_sends_nothing(make_client, openai_server: FakeOpenAI, db) -> None:
    gate = Stream.create(name="gate", kind="http_image", config={"url": "http://192.0.2.1/a"})
    yard = Stream.create(name="yard", kind="http_image", config={"url": "http://192.0.2.1/b"})
    ai = make_client(openai_server.url, GLIMPSER_AI_DAILY_TOKEN_BUDGET="100")
    openai_server.reply_json(GOOD)  # 120 tokens: over the budget of 100 afterwards
    openai_server.reply_json(GOOD)

    ai.describe(BIG_JPEG, stream_id=gate.id)
    with pytest.raises(AIBudgetExceeded, match="daily AI token budget of 100 used up"):
        ai.describe(BIG_JPEG, stream_id=gate.id)
    with pytest.raises(AIBudgetExceeded):
        ai.ask(BIG_JPEG, "Anyone there?", stream_id=gate.id)
    assert len(openai_server.requests) == 1

    # Another stream has its own budget; a per-stream budget overrides the setting; 0 = no limit.
    ai.describe(BIG_JPEG, stream_id=yard.id)
    with pytest.raises(AIBudgetExceeded, match="budget of 50"):
        ai.describe(BIG_JPEG, stream_id=gate.id, budget=50)
    openai_server.reply_json(GOOD)
    ai.describe(BIG_JPEG, stream_id=gate.id, budget=0)
    assert len(openai_server.requests) == 3
    assert ai.tokens_used_today(gate.id) == 240

    refused = [c for c in calls() if not c.ok]
    assert len(refused) == 3
    assert all(c.attempts == 0 and c.total_tokens == 0 for c in refused)


def test_cache_by_perceptual_hash(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_json(GOOD)
    openai_server.reply_json({**GOOD, "title": "Other prompt"})
    openai_server.reply_json({**GOOD, "title": "No hash"})
    openai_server.reply_json({**GOOD, "title": "No hash"})

    first = ai.describe(BIG_JPEG, stream_id=stream.id, phash="c3c3a5a5f0f00f0f")
    again = ai.describe(BIG_JPEG, stream_id=stream.id, phash="c3c3a5a5f0f00f0f")
    other = ai.describe(BIG_JPEG, stream_id=stream.id, phash="c3c3a5a5f0f00f0f", prompt="Cars?")
    ai.describe(BIG_JPEG, stream_id=stream.id, phash="")
    ai.describe(BIG_JPEG, stream_id=stream.id, phash="")

    assert not first.cached and again.cached
    assert again.as_dict() == first.as_dict()
    assert other.title == "Other prompt"
    assert len(openai_server.requests) == 4  # the hit sent nothing; no hash → no cache
    hit = calls()[1]
    assert hit.cached and hit.ok and hit.total_tokens == 0 and hit.attempts == 0


def test_ask_is_cached_per_question(make_client, openai_server: FakeOpenAI, stream) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_json({"match": True, "confidence": 0.7, "reason": "Open."})
    openai_server.reply_json({"match": False, "confidence": 0.7, "reason": "No car."})

    ai.ask(BIG_JPEG, "Is the door open?", stream_id=stream.id, phash="ffff0000ffff0000")
    cached = ai.ask(BIG_JPEG, "Is the door open?", stream_id=stream.id, phash="ffff0000ffff0000")
    other = ai.ask(BIG_JPEG, "Is a car there?", stream_id=stream.id, phash="ffff0000ffff0000")

    assert cached.cached and cached.match and cached.reason == "Open."
    assert not other.cached and not other.match
    assert len(openai_server.requests) == 2


def test_usage_recorded_on_each_database(
    database_url: str, make_client, openai_server: FakeOpenAI
) -> None:
    handle = init_database(database_url)
    migrate(handle)
    with database.connection_context():
        gate = Stream.create(name="gate", kind="http_image", config={"url": "http://192.0.2.1/a"})
        ai = make_client(openai_server.url)
        openai_server.reply_json(GOOD, prompt_tokens=10, completion_tokens=5)
        openai_server.reply_text("nonsense")
        ai.describe(BIG_JPEG, stream_id=gate.id)
        with pytest.raises(AIError):
            ai.describe(BIG_JPEG, stream_id=gate.id)
        rows = [(c.stream_id, c.ok, c.total_tokens, c.attempts) for c in calls()]
    assert rows == [(gate.id, True, 15, 1), (gate.id, False, 120, 1)]


# --- secrets and configuration ----------------------------------------------------------------


def _assert_no_secrets_logged(caplog) -> None:
    formatter = JSONFormatter()
    encoded = base64.b64encode(BIG_JPEG).decode()
    image_b64 = encoded[len(encoded) // 2 : len(encoded) // 2 + 40]
    assert caplog.records, "the calls were logged"
    for record in caplog.records:
        text = formatter.format(record) + repr(vars(record))
        assert API_KEY not in text
        assert image_b64 not in text


def test_key_and_image_never_logged(make_client, openai_server: FakeOpenAI, stream, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ai = make_client(openai_server.url, GLIMPSER_AI_IMAGE_MAX_PX="4096")  # image sent as it is
    openai_server.reply_error(503, "busy")
    openai_server.reply_json(GOOD)
    openai_server.reply_text("not json")

    ai.describe(BIG_JPEG, stream_id=stream.id)
    with pytest.raises(AIError) as caught:
        ai.describe(BIG_JPEG, stream_id=stream.id)

    assert API_KEY not in str(caught.value)
    assert openai_server.requests[0].images == [BIG_JPEG]
    lines = [
        r for r in caplog.records if r.name == "glimpser.analysis.ai" and "AI describe" in r.msg
    ]
    assert [r.outcome for r in lines] == ["ok", "failed"]
    assert [r.attempts for r in lines] == [2, 1]
    _assert_no_secrets_logged(caplog)


def test_from_settings_is_none_without_ai(tmp_path: Path, redis_client) -> None:
    settings = load_settings({"GLIMPSER_DATA_DIR": str(tmp_path / "data")})
    assert not settings.ai_configured
    assert AIClient.from_settings(settings, redis_client) is None


def test_ollama_needs_no_key(tmp_path: Path, redis_client, openai_server: FakeOpenAI, db) -> None:
    settings = load_settings(
        {
            "GLIMPSER_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSER_AI_BASE_URL": openai_server.url,
            "GLIMPSER_AI_MODEL": "llava",
        }
    )
    ai = AIClient.from_settings(settings, redis_client)
    assert ai is not None and ai.model == "llava"
    openai_server.reply_json(GOOD)
    ai.describe(BIG_JPEG, stream_id=None)
    assert openai_server.requests[0].headers["authorization"] == "Bearer not-needed"
    ai.close()


def test_usage_kept_when_the_stream_is_gone(make_client, openai_server: FakeOpenAI, db) -> None:
    ai = make_client(openai_server.url)
    openai_server.reply_json(GOOD)
    ai.describe(BIG_JPEG, stream_id=987654)  # deleted while the job ran
    [call] = calls()
    assert call.ok and call.stream_id is None and call.total_tokens == 120


def test_what_the_model_did_not_say_stays_unsaid():
    """A missing threat level or confidence is None (shown as nothing), never "normal" or 0 %."""
    from glimpser.analysis.ai import Description, parse_description

    said = parse_description('{"title": "Gate", "description": "An open gate."}')
    assert (said.threat, said.confidence) == (None, None)
    assert Description.from_cache(said.as_dict()) == Description(
        "Gate", "An open gate.", [], None, None, cached=True
    )
    full = parse_description('{"title": "t", "description": "d", "threat": 1, "confidence": 0.5}')
    assert (full.threat, full.confidence) == (1, 0.5)
