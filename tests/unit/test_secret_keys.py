"""Previous secret keys: the box opens with the current key then each previous one, and seals with the current
one only; the settings that name previous keys and trusted proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controlplane.config import Settings
from controlplane.secrets import SecretBox, SecretError

OLD, OLDER, NEW = "o" * 40, "p" * 40, "n" * 40


def test_a_box_opens_what_its_previous_keys_sealed_and_seals_under_the_current_key():
    box = SecretBox(NEW, previous=[OLD, OLDER])
    assert box.open(SecretBox(OLD).seal("a")) == "a"
    assert box.open(SecretBox(OLDER).seal("b")) == "b"
    fresh = box.seal("c")
    assert SecretBox(NEW).open(fresh) == "c"
    with pytest.raises(SecretError):
        SecretBox(OLD).open(fresh)
    with pytest.raises(SecretError):
        box.open(SecretBox("q" * 40).seal("d"))
    assert "o" * 10 not in repr(box)


def test_reseal_moves_a_value_to_the_current_key_and_leaves_current_ones_alone():
    box = SecretBox(NEW, previous=[OLD])
    moved = box.reseal(SecretBox(OLD).seal("secret"))
    assert moved is not None and SecretBox(NEW).open(moved) == "secret"
    assert box.reseal(SecretBox(NEW).seal("secret")) is None
    with pytest.raises(SecretError):
        box.reseal(SecretBox("q" * 40).seal("secret"))
    with pytest.raises(SecretError):
        box.reseal("not-a-token")


def test_previous_keys_are_a_comma_separated_list_without_blanks_repeats_or_the_current_key():
    settings = Settings(_env_file=None, secret_key=NEW, secret_key_previous=f" {OLD}, ,{NEW},{OLDER},{OLD}")
    assert settings.previous_secret_keys == (OLD, OLDER)
    assert Settings(_env_file=None).previous_secret_keys == ()
    assert OLD not in repr(settings)


def test_trusted_proxies_are_networks_and_go_with_a_header():
    settings = Settings(_env_file=None, trusted_proxy_header="X-Forwarded-For",
                        trusted_proxies="127.0.0.1/32, 10.0.0.0/8,::1")
    assert [str(n) for n in settings.trusted_proxy_networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    with pytest.raises(ValidationError, match="not an address or network"):
        Settings(_env_file=None, trusted_proxy_header="X-Forwarded-For", trusted_proxies="10.0.0.0/33")
    with pytest.raises(ValidationError, match="must be set together"):
        Settings(_env_file=None, trusted_proxy_header="X-Forwarded-For")
    with pytest.raises(ValidationError, match="must be set together"):
        Settings(_env_file=None, trusted_proxies="10.0.0.1")
    with pytest.raises(ValidationError, match="trusted_proxy_header"):
        Settings(_env_file=None, trusted_proxy_header="X-Forwarded-For: evil", trusted_proxies="10.0.0.1")
