"""Pushing: a staged repository uploaded in one commit. A missing token, an unreachable Hub or a refused push raises
:class:`HubPushError`, whose message says where the staged copy is and how to push it again."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .command import redact

logger = logging.getLogger(__name__)

__all__ = ["HubPushError", "PushedRepo", "push_to_hub"]


class HubPushError(RuntimeError):
    """A push failed (no token, Hub unreachable, push refused). The staged repository is kept at ``stage_dir``."""

    def __init__(self, message: str, stage_dir: str | os.PathLike, repo_id: str):
        super().__init__(message)
        self.stage_dir = Path(stage_dir)
        self.repo_id = repo_id


@dataclass
class PushedRepo:
    """Where a push went."""

    repo_id: str
    repo_type: str
    repo_url: str
    commit_url: str | None
    revision: str | None


def push_to_hub(
    stage_dir: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = True,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> PushedRepo:
    """Upload a staged repository in one commit: ``create_repo(exist_ok=True)``, ``create_branch`` when
    ``revision`` is a branch other than main, then ``upload_folder``.

    ``api`` is an ``huggingface_hub.HfApi`` (default: ``HfApi(token=token)``). The token is ``token``, else the
    api's, else :func:`huggingface_hub.get_token` (``HF_TOKEN`` or ``hf auth login``). Nothing is deleted: on a
    missing token, an unreachable Hub or a refused push, :class:`HubPushError` says where the staged copy is and how
    to push it again. No token is ever written to the logs or the message.
    """
    from huggingface_hub import HfApi, get_token

    # HTTPError: the HTTP backend's base error (connection refused, DNS failure, timeout); HfHubHTTPError derives
    # from it, so it is caught first.
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    stage = Path(stage_dir)
    if not (stage / "README.md").is_file():
        raise FileNotFoundError(f"{stage} is not a staged repository (no README.md card): stage the artifact first.")
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
    again = _push_again(stage, repo_id, repo_type, revision, private)
    no_token = (
        f"No Hugging Face token found, so nothing was uploaded to {repo_id}. Log in with `hf auth login` or set "
        f"HF_TOKEN. {again}"
    )
    token = token or getattr(api, "token", None) or get_token()
    if not token:
        raise HubPushError(no_token, stage, repo_id)
    api = api if api is not None else HfApi(token=token)
    logger.info(
        "Pushing %s to the %s repo %s%s", stage, repo_type, repo_id, f" (branch {revision})" if revision else ""
    )
    try:
        url, commit = _upload(api, stage, repo_id, repo_type, private, revision, commit_message)
    except LocalTokenNotFoundError as err:
        raise HubPushError(no_token, stage, repo_id) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        raise HubPushError(
            f"The Hub refused the push to the {repo_type} repo {repo_id} (HTTP {status}: "
            f"{redact(str(err), token)}). Check the repo id and that your token may write to it. {again}",
            stage,
            repo_id,
        ) from err
    except (OfflineModeIsEnabled, ConnectionError, TimeoutError, HTTPError) as err:
        raise HubPushError(
            f"Could not reach the Hugging Face Hub to push {repo_id} ({type(err).__name__}: "
            f"{redact(str(err), token)}). {again}",
            stage,
            repo_id,
        ) from err
    return PushedRepo(
        repo_id=url.repo_id,
        repo_type=repo_type,
        repo_url=str(url),
        commit_url=commit.commit_url,
        revision=revision,
    )


def _upload(
    api: Any,
    stage: Path,
    repo_id: str,
    repo_type: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
) -> tuple[Any, Any]:
    """``create_repo``, ``create_branch`` (a branch other than main) and ``upload_folder``: the repo URL and the
    commit."""
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(url.repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    commit = api.upload_folder(
        repo_id=url.repo_id,
        folder_path=str(stage),
        repo_type=repo_type,
        commit_message=commit_message or f"Upload {stage.name} with mds-vqa",
        revision=revision,
    )
    return url, commit


def _push_again(stage: Path, repo_id: str, repo_type: str, revision: str | None, private: bool) -> str:
    """The sentence saying the staged copy is intact and the command that pushes it again."""
    flag = "--hub_model_id" if repo_type == "model" else "--hub_dataset_id"
    return (
        f"Nothing in {stage} was lost; push it again with: python recipes/push.py --artifact_dir {stage} "
        f"{flag} {repo_id}"
        + (f" --hub_revision {revision}" if revision else "")
        + ("" if private else " --hub_private false")
    )
