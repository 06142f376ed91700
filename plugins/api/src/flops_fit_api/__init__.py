"""flops-fit `api`: train on another machine over HTTP.

`flops-fit serve` (added to the CLI here) trains the runs it is sent on its own devices; the
`api` trainer sends a study's runs to such a server and waits for their results. Registered
through the `flops_fit` entry point like any third-party plugin; httpx, FastAPI and uvicorn are
imported only when a command or a run needs them (this module is imported at every CLI start:
it imports `trainer`, which imports neither).
"""

from flops_fit_core import hookimpl

from .trainer import TOKEN_ENV, ApiConfig, ApiTrainer, resolve_token

__all__ = [
    "TOKEN_ENV",
    "ApiConfig",
    "ApiTrainer",
    "flops_fit_register_commands",
    "flops_fit_register_trainers",
    "resolve_token",
]

#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_trainers():
    """The trainer classes this distribution adds: just `api`."""
    return [ApiTrainer]


@hookimpl
def flops_fit_register_commands(cli):
    """`flops-fit serve`."""
    from .serve import serve

    cli.add_command(serve)
