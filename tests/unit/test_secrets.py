"""Secrets at rest: sealed under a key derived from the secret key, authenticated, never shown."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from controlplane.secrets import INFO_LABEL, SecretBox, SecretError, derive_key

KEY = "k" * 40


def test_round_trip_and_a_fresh_token_each_time():
    box = SecretBox(KEY)
    first, second = box.seal("s3cr3t-pässword"), box.seal("s3cr3t-pässword")
    assert first != second
    assert box.open(first) == box.open(second) == "s3cr3t-pässword"
    assert "s3cr3t" not in first


def test_the_same_secret_key_opens_what_another_instance_sealed():
    assert SecretBox(KEY).open(SecretBox(KEY).seal("x")) == "x"


def test_another_secret_key_cannot_open_it():
    token = SecretBox(KEY).seal("x")
    with pytest.raises(SecretError) as info:
        SecretBox("another-key-" * 4).open(token)
    assert "x" not in str(info.value).replace("cannot", "").replace("secret", "")


@pytest.mark.parametrize("token", ["", "not-a-token", "gAAAAA", "é"])
def test_garbage_is_refused_with_secret_error(token):
    with pytest.raises(SecretError):
        SecretBox(KEY).open(token)


def test_an_altered_token_is_refused():
    token = SecretBox(KEY).seal("payload")
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-40] ^= 1
    with pytest.raises(SecretError):
        SecretBox(KEY).open(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_key_is_derived_not_the_secret_key_itself_and_depends_on_the_label():
    key = derive_key(KEY)
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert KEY.encode() not in base64.urlsafe_b64decode(key)
    assert derive_key(KEY) == key
    assert derive_key(KEY, info=b"other purpose") != key
    assert derive_key(KEY + "!") != key
    # A plain Fernet with the derived key reads the box's tokens: standard Fernet, nothing home-made.
    assert Fernet(key).decrypt(SecretBox(KEY).seal("std").encode()) == b"std"
    assert INFO_LABEL


def test_an_empty_secret_key_is_refused():
    with pytest.raises(ValueError):
        SecretBox("")


def test_repr_hides_everything():
    assert repr(SecretBox(KEY)) == "SecretBox(***)"
