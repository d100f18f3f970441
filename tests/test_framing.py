"""Property-based tests of the framing and of every decoder: any bytes give a message or a typed error."""

from __future__ import annotations

import asyncio
import struct
import typing

import msgspec
import msgspec.inspect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hodei.errors import FrameTooLarge, ProtocolError
from hodei.frames import encode_frame
from hodei.framing import FrameReader
from hodei.protocol import (
    MAX_FRAME,
    AgentToDaemon,
    CtlReply,
    CtlRequest,
    DaemonToAgent,
    GetJob,
    HandshakeReply,
    Hello,
    JobSpec,
    Output,
    Stream,
    Submit,
)

UNIONS = [Hello, CtlRequest, CtlReply, AgentToDaemon, DaemonToAgent, HandshakeReply]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_all(data: bytes, type_: object) -> list[object]:
    """Feed bytes to a FrameReader and collect messages until the end or a typed error."""

    async def go() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        frames: FrameReader[object] = FrameReader(reader, type_)
        out = []
        while (msg := await frames.read()) is not None:
            out.append(msg)
        return out

    return asyncio.run(go())


def decode_or_typed_error(data: bytes, type_: object) -> None:
    """Either every frame decodes to a message of ``type_``, or reading stops with a ProtocolError."""
    try:
        messages = read_all(data, type_)
    except ProtocolError:
        return  # FrameTooLarge is a ProtocolError too
    assert all(isinstance(m, type_) for m in messages), messages  # type: ignore[arg-type]


@SETTINGS
@given(st.binary(max_size=4096), st.sampled_from(UNIONS))
def test_random_bytes_give_messages_or_a_protocol_error(data: bytes, type_: object) -> None:
    """Whatever the bytes, reading them yields messages or a ProtocolError, nothing else."""
    decode_or_typed_error(data, type_)


@SETTINGS
@given(st.binary(max_size=2048), st.sampled_from(UNIONS))
def test_random_bodies_behind_a_valid_prefix(body: bytes, type_: object) -> None:
    """A well-framed body of random bytes is a message or a ProtocolError, never an unhandled exception."""
    decode_or_typed_error(struct.pack(">I", len(body)) + body, type_)


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1) | st.floats()
                    | st.text(max_size=50) | st.binary(max_size=50),
                    lambda children: st.lists(children, max_size=5)
                    | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=50),
       st.sampled_from(UNIONS))
def test_arbitrary_msgpack_values(value: object, type_: object) -> None:
    """Any msgpack value, nested or not, with or without a tag, decodes or gives a ProtocolError."""
    decode_or_typed_error(encode_frame(value), type_)


# Values of every msgpack kind; for each field, the ones its declared type does not accept are wrong.
KINDS = [None, True, 7, 1.5, "x", b"x", [1]]


def wrong_values(field_type: object) -> list[object]:
    wrong = []
    for value in KINDS:
        try:
            msgspec.convert(value, field_type)
        except msgspec.ValidationError:
            wrong.append(value)
    return wrong


def fields_with_wrong_values() -> list[tuple[object, str, str, object]]:
    """(union, tag, field, wrong value) for every field of every message type on the wire."""
    cases = []
    for union in UNIONS:
        info = msgspec.inspect.type_info(union)
        for struct_info in getattr(info, "types", (info,)):
            hints = typing.get_type_hints(struct_info.cls)
            for field in struct_info.fields:
                cases += [(union, struct_info.cls.__name__, field.encode_name, v)
                          for v in wrong_values(hints[field.name])]
    return cases


def test_wrong_field_types_under_real_tags() -> None:
    """Real tags with wrong field types are refused as ProtocolErrors that name the field."""
    cases = fields_with_wrong_values()
    assert len({(tag, field) for _, tag, field, _ in cases}) > 50  # every field of every message, not a few
    for union, tag, field, value in cases:
        frame = encode_frame({"type": tag, field: value})
        try:
            got = read_all(frame, union)
        except ProtocolError as e:
            assert f"`$.{field}" in str(e) and "missing" not in str(e), (tag, field, value, str(e))
            continue
        raise AssertionError(f"{tag} with {field}={value!r} was accepted as {got}")


@given(st.integers(min_value=MAX_FRAME + 1, max_value=2**32 - 1))
def test_length_over_the_cap_is_refused_before_the_body(length: int) -> None:
    """A frame announcing more than the cap is refused without waiting for its body."""
    try:
        read_all(struct.pack(">I", length), CtlRequest)
    except FrameTooLarge:
        return
    raise AssertionError("an oversized frame was not refused")


@given(st.binary(max_size=1000))
def test_truncated_frames_are_errors(body: bytes) -> None:
    """A frame cut short is a ProtocolError, a clean end between frames is not."""
    frame = encode_frame(GetJob(job_id=7))
    assert read_all(frame, CtlRequest) == [GetJob(job_id=7)]
    for cut in range(1, len(frame)):
        try:
            read_all(frame[:cut], CtlRequest)
        except ProtocolError:
            continue
        raise AssertionError(f"a frame cut at {cut} bytes was accepted")


@given(st.lists(st.text(max_size=200), min_size=1, max_size=5), st.dictionaries(st.text(max_size=20),
                                                                                 st.text(max_size=50), max_size=5),
       st.binary(max_size=3000), st.integers(min_value=1, max_value=2**40))
def test_round_trip(command: list[str], env: dict[str, str], data: bytes, seq: int) -> None:
    """What is encoded is what is decoded: specs, env and binary output alike."""
    submit = Submit(spec=JobSpec(command=command, env=env, shell=len(command) == 1))
    output = Output(job_id=1, seq=seq, stream=Stream.STDERR, ts=1.5, data=data)
    assert read_all(encode_frame(submit), CtlRequest) == [submit]
    assert read_all(encode_frame(output) + encode_frame(output), AgentToDaemon) == [output, output]


def test_huge_string_and_deep_nesting_are_bounded() -> None:
    """A string as large as the cap allows is decoded whole; nesting 100,000 deep, at the top or in a
    field, is refused as a ProtocolError without descending into it."""
    big = encode_frame({"type": "Submit", "spec": {"command": ["x" * (MAX_FRAME - 100)]}})
    assert read_all(big, CtlRequest) == [Submit(spec=JobSpec(command=["x" * (MAX_FRAME - 100)]))]
    deep = b"\x91" * 100_000 + b"\xc0"  # 100,000 nested one-element arrays
    in_a_field = encode_frame({"type": "Submit", "spec": {"command": []}})[4:-1] + deep  # command: [[[...]]]
    for body in (deep, in_a_field):
        try:
            read_all(struct.pack(">I", len(body)) + body, CtlRequest)
        except ProtocolError as e:
            assert "Expected" in str(e)
            continue
        raise AssertionError("a message nested 100,000 deep was accepted")
