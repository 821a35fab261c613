"""Claim 3, end to end: the two interfaces of the method, with the real streaming server.

The claim in our words: the streaming server hands its bookmark-set request to the portal
by calling a reverse bookmark-set interface agreed in advance. Once the user has picked a
bookmark, the terminal asks the portal for the bookmark interface, the portal returns
it, and the terminal calls it to fetch the program from the streaming server and play it
from the bookmark.

What is shown here, after one real interruption (own terminal, link cut, heartbeat):

- the reverse interface is the server's own: the request its outbox signed was accepted,
  while the very same BookMarkReq sent unsigned, or signed with a key that is not the
  shared one, or altered after signing, is refused and stores nothing;
- the bookmark interface is a resume URL with a fresh EncryptToken and the ContentBM;
  the terminal calls it over RTSP and its first frame is the bookmark's frame;
- the time point travels inside the interface itself: a player that does no seek of its
  own (our player without ``start``, and FFmpeg's client through PyAV) opening the resume
  URL is started by the server at the keyframe at or before the bookmark.

(The portal alone, over HTTP, is tested in test_portal_claims_http.py.)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from story import DEADLINE, Cut, Story, frame_of, running_story

from rtsp_resume import tokens
from rtsp_resume.player import Player
from rtsp_resume.sample import read_frame_index


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path
                ) -> Iterator[tuple[Story, Cut]]:
    """One system in which alice's viewing of the sample was cut after about 3 s."""
    with running_story(tmp_path_factory.mktemp("claim3"), sample_dir) as story:
        cut = story.play_and_cut(story.login("alice"), "sample", seconds=3.2)
        assert cut.delivery.status == "delivered"
        yield story, cut


def post_bookmark_set(story: Story, body: bytes, headers: dict[str, str]
                      ) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        story.system.portal_url + "/api/bookmark/set", data=body, method="POST",
        headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def resume_interface(story: Story) -> tuple[dict[str, Any], dict[str, Any]]:
    """Log in again, pick the sample's bookmark, ask the portal for its interface."""
    portal = story.login("alice")
    mark = next(m for m in portal.bookmarks() if m["ContentID"] == "sample")
    return mark, portal.bookmark_interface(mark)


def test_claim_3_only_the_servers_signed_call_of_the_reverse_interface_is_accepted(
    interrupted: tuple[Story, Cut],
) -> None:
    story, cut = interrupted
    # The streaming server's own call: signed with the shared key, accepted and saved.
    assert cut.delivery.response is not None
    assert cut.delivery.response["ResultCode"] == 0
    assert cut.delivery.attempts == 1
    history = story.store.history("alice")
    assert [h["nonce"] for h in history] == [cut.delivery.nonce]

    body = json.dumps(cut.delivery.request).encode()
    now = cut.interruption.detected_at
    unsigned = post_bookmark_set(story, body, {})
    assert unsigned[0] == 401 and unsigned[1]["ResultCode"] == 3
    forged = post_bookmark_set(story, body, tokens.sign_request(b"k" * 32, body, now))
    assert forged[0] == 403 and forged[1]["ResultCode"] == 4
    # A signed request changed afterwards (a later ContentBM) is a forgery too.
    signed = tokens.sign_request(story.system.secret, body, now)
    altered = json.dumps({**cut.delivery.request, "ContentBM": 9.0}).encode()
    tampered = post_bookmark_set(story, altered, signed)
    assert tampered[0] == 403 and tampered[1]["ResultCode"] == 4
    # None of them stored anything; the bookmark is still the server's.
    assert [h["nonce"] for h in story.store.history("alice")] == [cut.delivery.nonce]
    saved = story.store.bookmark("alice", "sample")
    assert saved.position == cut.delivery.request["ContentBM"]


def test_claim_3_the_terminal_calls_the_bookmark_interface_and_plays_from_its_time_point(
    interrupted: tuple[Story, Cut],
) -> None:
    story, cut = interrupted
    mark, interface = resume_interface(story)
    assert interface["ContentID"] == "sample"
    assert interface["ContentBM"] == mark["ContentBM"] == cut.delivery.request["ContentBM"]
    url = urllib.parse.urlsplit(interface["url"])
    assert f"{url.scheme}://{url.netloc}" == story.system.rtsp_url
    assert urllib.parse.parse_qs(url.query) == {"token": [interface["EncryptToken"]]}
    assert interface["EncryptToken"] != mark["EncryptToken"]  # a fresh play token

    player = Player(interface["url"], start=float(interface["ContentBM"]), exact=True).start()
    try:
        assert player.wait_frames(1, timeout=DEADLINE), player.error
        first = player.frames[0]
    finally:
        player.stop()
    assert first.index == frame_of(interface["ContentBM"])
    assert first.index <= cut.last_seen.index + 1  # nothing skipped


def test_claim_3_a_player_without_a_seek_of_its_own_starts_at_the_bookmarks_keyframe(
    interrupted: tuple[Story, Cut],
) -> None:
    story, _ = interrupted
    mark, interface = resume_interface(story)
    media = story.system.streaming.library.get("sample")
    keyframe = media.keyframe_at_or_before(mark["ContentBM"])
    assert keyframe > 0  # else starting at 0 would pass for honouring the bookmark

    plain = Player(interface["url"]).start()  # start=None: a plain PLAY
    try:
        assert plain.wait_frames(1, timeout=DEADLINE), plain.error
        first = plain.frames[0]
    finally:
        plain.stop()
    assert plain.range_start == pytest.approx(keyframe)
    assert first.index == frame_of(keyframe)

    # FFmpeg's RTSP client, which knows nothing of bookmarks, lands there as well.
    _, interface = resume_interface(story)
    options = {"rtsp_transport": "tcp", "analyzeduration": "200000"}
    with av.open(interface["url"], options=options, timeout=DEADLINE) as container:
        frame = next(container.decode(video=0))
    assert read_frame_index(frame) == frame_of(keyframe)
