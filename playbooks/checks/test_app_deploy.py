"""Checks of the app_deploy role: the artifact in place with its checksum, the release live, the app answering."""

from __future__ import annotations

from typing import Any

from conftest import http_get

ROLE = "app_deploy"


def _sha256(role_vars: dict[str, Any]) -> str:
    return str(role_vars["app_deploy_artifact_checksum"]).removeprefix("sha256:")


def context_path(name: str) -> str:
    """The path Tomcat serves <name>.war at: ROOT.war at /, a#b.war at /a/b/ (Tomcat's naming of WAR files)."""
    return "/" if name == "ROOT" else "/" + name.replace("#", "/") + "/"


def test_artifact_is_in_place_with_its_checksum(host: Any, role_vars: dict[str, Any]) -> None:
    name, sha256 = role_vars["app_deploy_name"], _sha256(role_vars)
    if role_vars["app_deploy_kind"] == "war":
        war = host.file(f"{role_vars['app_deploy_tomcat_webapps_dir']}/{name}.war")
        assert war.exists
        assert war.sha256sum == sha256
        assert war.group == role_vars["app_deploy_tomcat_group"]
    else:
        release = f"{name}-{sha256[:16]}"
        root = host.file(role_vars["app_deploy_static_root"])
        assert root.is_symlink and root.linked_to.endswith(f"/releases/{release}")
        archives = host.check_output(f"ls {role_vars['app_deploy_cache_dir']}").split()
        cached = [a for a in archives if a.startswith(release + "-")]
        assert cached, f"no cached archive of {release}"
        assert host.file(f"{role_vars['app_deploy_cache_dir']}/{cached[0]}").sha256sum == sha256


def test_application_is_deployed(host: Any, role_vars: dict[str, Any]) -> None:
    name = role_vars["app_deploy_name"]
    if role_vars["app_deploy_kind"] == "war":
        # Tomcat unpacked it: the application is deployed, not merely copied. Tomcat's mark on what it unpacked
        # tells it from a directory deployed as it is, such as Debian's default ROOT (the "It works !" page at /),
        # which holds the context and keeps the WAR out.
        unpacked = f"{role_vars['app_deploy_tomcat_webapps_dir']}/{name}"
        assert host.file(f"{unpacked}/WEB-INF").is_directory, (
            f"{unpacked}/WEB-INF is missing: Tomcat has not deployed {name}.war at {context_path(name)}")
        assert host.file(f"{unpacked}/META-INF/war-tracker").exists, (
            f"{unpacked} has no META-INF/war-tracker: {context_path(name)} serves a directory, not {name}.war")
    else:
        assert host.file(role_vars["app_deploy_static_root"] + "/index.html").exists


def test_application_answers(host: Any, role_vars: dict[str, Any]) -> None:
    url = role_vars["app_deploy_health_url"]
    if not url:
        return
    status, body = http_get(host, url)
    assert status == 200, body[:200]
    assert role_vars["app_deploy_health_content"] in body
