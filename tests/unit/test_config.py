import pytest
from pydantic import ValidationError

from controlplane.config import DEFAULT_SECRET_KEY, Settings

STRONG = "k" * 16 + "9" * 16 + "!x"


def test_dev_defaults_to_a_sqlite_file_in_the_data_dir(tmp_path):
    settings = Settings(_env_file=None, env="dev", data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'controlplane.db'}"
    assert settings.secret_key == DEFAULT_SECRET_KEY


def test_environment_variables_use_the_cp_prefix(monkeypatch):
    monkeypatch.setenv("CP_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/x")
    monkeypatch.setenv("CP_TOKEN_TTL_MINUTES", "15")
    settings = Settings(_env_file=None)
    assert settings.effective_database_url == "postgresql+psycopg://u@127.0.0.1/x"
    assert settings.token_ttl_minutes == 15


@pytest.mark.parametrize("secret", [DEFAULT_SECRET_KEY, "short-secret"])
def test_prod_refuses_default_or_weak_secret(secret):
    with pytest.raises(ValidationError, match="CP_SECRET_KEY"):
        Settings(_env_file=None, env="prod", secret_key=secret, database_url="postgresql+psycopg://u@h/db")


def test_prod_refuses_the_implicit_sqlite_default():
    with pytest.raises(ValidationError, match="CP_DATABASE_URL"):
        Settings(_env_file=None, env="prod", secret_key=STRONG)


def test_prod_starts_with_explicit_secrets():
    settings = Settings(_env_file=None, env="prod", secret_key=STRONG, database_url="postgresql+psycopg://u@h/db")
    assert settings.env == "prod"


def test_unknown_environment_is_refused():
    with pytest.raises(ValidationError, match="env"):
        Settings(_env_file=None, env="staging")
