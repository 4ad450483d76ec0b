"""The Flower App folders fedrec writes (``fedrec.shared.flower_app``): a ``pyproject.toml``
naming fedrec's installed components, in the run directory, so that no source checkout is
needed (issue #20, part 1). The end-to-end check from a wheel is tests/test_wheel.py."""

from __future__ import annotations

import os
from pathlib import Path

import tomllib
from flwr.common.config import validate_config

from fedrec.shared import flower_app
from fedrec.shared.config import RunConfig
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import release_sim, simulate_cmd, simulate_launch

ROOT = Path(__file__).resolve().parents[1]


def _checkout_app() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]


def test_the_checkout_pyproject_names_the_same_fedavg_app():
    """``flwr run .`` in a checkout and the folders fedrec writes run the same app."""
    app = _checkout_app()
    assert app["components"] == flower_app.FEDAVG
    written = simulate_cmd.app_pyproject(7)["tool"]["flwr"]
    assert written["app"]["components"] == flower_app.FEDAVG
    assert written["app"]["config"] == app["config"] == RunConfig().to_flower()
    assert written["federations"]["local-simulation"]["options"]["num-supernodes"] == 7


def test_flwr_run_dot_from_the_checkout_finds_the_components():
    """``flwr run .`` validates the checkout's pyproject from the checkout folder: the
    components ``fedrec.server.app:app`` resolve through fedrec/__init__.py's mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert validate_config(config, check_module=True, project_dir=ROOT)[0]


def test_the_written_apps_pass_flowers_own_validation(tmp_path):
    """Flower checks the fields and imports each component's module from the folder,
    which holds no code: ``fedrec.server.app`` must be found as an installed module."""
    apps = [simulate_cmd.app_pyproject(3),
            release_sim.app_pyproject(ReleaseConfig(out=str(tmp_path / "r")), 3)]
    for app in apps:
        folder = flower_app.write_app(tmp_path / "app", app)
        written = tomllib.loads((folder / "pyproject.toml").read_text())
        assert validate_config(written, check_module=True, project_dir=folder) == (True, [], [])
    assert apps[1]["tool"]["flwr"]["app"]["components"] == flower_app.RELEASE


def test_simulate_launches_flower_on_an_app_folder_in_the_run_directory(tmp_path, monkeypatch):
    """Before: ``flower-simulation --app <the folder above the package>``, which in a wheel
    is site-packages (no pyproject.toml there)."""
    seen = {}

    def popen(args, **kwargs):
        seen.update(args=args, **kwargs)
        return "proc"

    monkeypatch.setattr(simulate_launch.subprocess, "Popen", popen)
    out = tmp_path / "run"
    cfg = RunConfig(out=str(out), rounds=2)
    assert simulate_cmd.launch(cfg, 5, 1) == "proc"
    args = seen["args"]
    app = Path(args[args.index("--app") + 1])
    assert app == out.resolve() / "app" and Path(seen["cwd"]) == app
    written = tomllib.loads((app / "pyproject.toml").read_text())
    assert written["tool"]["flwr"]["app"]["components"] == flower_app.FEDAVG
    run_config = Path(args[args.index("--run-config") + 1])
    assert tomllib.loads(run_config.read_text()) == cfg.to_flower()
    assert args[args.index("--num-supernodes") + 1] == "5"
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_processes_started_from_a_checkout_import_the_checkout(monkeypatch):
    assert flower_app.source_root() == ROOT
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", str(ROOT)]))
    env = flower_app.subprocess_env(EXTRA="1")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    assert env["EXTRA"] == "1"


def test_the_deployment_project_is_fedrecs_app_pointing_at_the_deployment(tmp_path):
    from fedrec.server.deployment import FEDERATION, LocalDeployment

    fed = LocalDeployment(tmp_path)
    fed.credentials(1)
    project = tomllib.loads((fed.project / "pyproject.toml").read_text())
    assert fed.project == tmp_path / "project"
    assert project["tool"]["flwr"]["app"]["components"] == flower_app.FEDAVG
    assert project["tool"]["flwr"]["app"]["config"] == RunConfig().to_flower()
    assert project["tool"]["flwr"]["federations"][FEDERATION] == {
        "address": f"127.0.0.1:{fed.ports.control}",
        "root-certificates": str(fed.creds.ca_cert)}


def test_flower_can_ship_and_install_the_written_app_as_a_fab(tmp_path):
    """``flwr run <folder>`` builds a FAB and the SuperLink installs it: Flower 1.23 fails
    on a FAB without a file besides pyproject.toml (the deployment's first failure)."""
    from flwr.cli.build import build_fab_from_disk
    from flwr.cli.install import install_from_fab

    folder = flower_app.write_app(tmp_path / "project", simulate_cmd.app_pyproject(3))
    installed = install_from_fab(build_fab_from_disk(folder), flwr_dir=tmp_path / "flwr",
                                 skip_prompt=True)
    config = tomllib.loads((Path(installed) / "pyproject.toml").read_text())
    assert config["tool"]["flwr"]["app"]["components"] == flower_app.FEDAVG
