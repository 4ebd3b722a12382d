"""Training loggers, by Avalanche's own classes: TensorBoard, CSV, Weights & Biases.

comet-cl records what its metrics need itself (``comet_cl.recorder``); these loggers are for
watching a run: Avalanche's evaluator logs the training loss and accuracy per minibatch and
epoch into the run's folder (``<run>/tensorboard``, ``<run>/csv``) or to W&B (the ``wandb``
extra; project ``comet-cl``, run named after the run folder). Logging never changes results,
so it is not part of a run's config: choose it per command (``comet-cl run --log csv``).
"""

from __future__ import annotations

from pathlib import Path

from comet_cl.config import ConfigError, closest

LOGGERS = ("tensorboard", "csv", "wandb")


def check(names) -> tuple[str, ...]:
    """The logger names, checked (a clear error naming the unknown one)."""
    names = tuple(dict.fromkeys(names or ()))
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"--log: unknown logger '{name}'{closest(name, LOGGERS)} "
                              f"(known: {', '.join(LOGGERS)})")
    return names


def make_loggers(names, run_dir: Path) -> list:
    """Avalanche loggers writing into ``run_dir`` (Avalanche imported only when asked for)."""
    import comet_cl._avalanche  # noqa: F401
    from avalanche.logging import CSVLogger, TensorboardLogger
    out = []
    for name in check(names):
        if name == "tensorboard":
            out.append(TensorboardLogger(tb_log_dir=Path(run_dir) / "tensorboard"))
        elif name == "csv":
            out.append(CSVLogger(log_folder=Path(run_dir) / "csv"))
        else:
            try:
                import wandb  # noqa: F401
            except ImportError as e:
                raise ConfigError("--log wandb needs Weights & Biases: pip install "
                                  "'comet-cl[wandb]'") from e
            from avalanche.logging import WandBLogger
            run = Path(run_dir)
            out.append(WandBLogger(project_name="comet-cl",
                                   run_name="/".join(run.parts[-3:]), dir=run))
    return out


def evaluator(names, run_dir: Path):
    """Avalanche's evaluator with training loss and accuracy (per minibatch and epoch) going
    to the chosen loggers; None when no logger is chosen (the strategy's silent default)."""
    if not check(names):
        return None
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin
    return EvaluationPlugin(accuracy_metrics(minibatch=True, epoch=True),
                            loss_metrics(minibatch=True, epoch=True),
                            loggers=make_loggers(names, run_dir))
