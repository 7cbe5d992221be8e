"""The private skorch net that runs training for the estimators.

The estimator composes it (``net_``); users never construct it. It replaces skorch's
per-sample ``DataLoader`` by slicing batches out of tensors that already sit on the
device, computes masked per-task losses, and hands them to the multi-task method.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping, EpochTimer, PassthroughScoring
from skorch.utils import TeeGenerator

from ._batches import BatchIterator, EpochSeededBatches, TaskDataset, request_batches
from ._distributed import data_parallel_context
from ._printlog import EpochTable
from ._task_scoring import TaskScoring, task_losses
from .models import MODULE_WRAPPERS
from .models._batch import Batch
from .optim import MultiTaskOptimizer, StepContext

# A per-task loss above this many times log 2, the loss of predicting 0.5 for every row (the
# loss of the best constant prediction is at most that), means training has diverged: a model
# that converges starts near log 2 and goes down, while an update that overshot sends the
# logits, and the loss with them, to 1e6 and beyond in a step or two (lr=1e3 gave 1e14). A
# batch's mean loss this high needs logits in the thousands on the wrong side, which no
# converging model produces. Times pos_weight when above 1, which scales the positive term.
_DIVERGED_LOSS_RATIO = 1e4


def _no_donated_buffers(active: bool):
    """While ``torch.compile`` traces (forward and backward): keep the backward graph's buffers, since multi-task
    methods run one backward pass per task on one graph (``retain_graph=True``), which
    AOTAutograd's donated buffers forbid."""
    if not active:
        return contextlib.nullcontext()
    from torch._functorch import config as functorch_config

    return functorch_config.patch(donated_buffer=False)


class MultiTaskNet(NeuralNet):
    """skorch ``NeuralNet`` whose step is driven by a :class:`MultiTaskOptimizer`."""

    def __init__(
        self,
        module,
        *,
        mto: MultiTaskOptimizer,
        task_weights: torch.Tensor,
        task_names: list[str],
        weight_decay: float = 0.0,
        precision: str = "fp32",
        compile_module: bool | dict = False,
        seed: int = 0,
        pos_weight: torch.Tensor | None = None,
        **kwargs,
    ):
        super().__init__(module, criterion=torch.nn.BCEWithLogitsLoss, **kwargs)
        self.mto = mto
        self.task_weights = task_weights
        self.task_names = task_names
        self.weight_decay = weight_decay
        self.precision = precision
        self.compile_module = compile_module
        self.seed = seed
        self.pos_weight = pos_weight

    # -- initialisation -------------------------------------------------------------------
    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("task_scoring", TaskScoring(self.task_names)),
            ("print_log", EpochTable(keys_ignored=self._print_ignored())),
        ]

    def _print_ignored(self) -> list[str]:
        # The verbose table shows each task's validation AUC (when there is a validation split)
        # and the means; the other per-task values stay in the history only.
        per_task = [
            f"{p}_{m}_{t}" for p, m in (("train", "loss"), ("train", "auc"), ("valid", "loss")) for t in self.task_names
        ]
        return per_task + ["train_auc"]

    def initialize_module(self):
        super().initialize_module()
        self.module_ = self.mto.wrap_module(self.module_, len(self.task_names), wrappers=MODULE_WRAPPERS)
        # Training steps hand the labels to an architecture whose auxiliary loss needs them.
        self.module_reads_labels_ = type(self.module_).reads_labels()
        # None for a method without state (always set: the net's other code reads it directly)
        self.mto_state_ = self.mto.create_state(self.module_, len(self.task_names))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        self.optimizer_ = self.mto.create_optimizer(
            self.module_, self.mto_state_, lr=self.lr, weight_decay=self.weight_decay
        )
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        # Under torchrun: every rank starts from rank 0's weights (see _distributed).
        self.data_parallel_ = data_parallel_context()
        if self.data_parallel_ is not None:
            self.data_parallel_.check_same_data(X.y)
            state = self.mto_state_
            tensors = list(self.module_.parameters()) + list(self.module_.buffers())
            self.data_parallel_.broadcast_from_rank0(tensors + ([] if state is None else list(state.parameters())))

    def fit_loop(self, X, y=None, **fit_params):
        self._interrupt, self._epochs_ended, self._stopped_early = None, len(self.history), False
        try:
            return super().fit_loop(X, y, **fit_params)
        except KeyboardInterrupt as exc:
            # skorch's partial_fit swallows it (then runs on_train_end, where early stopping
            # restores the best weights): kept for the estimator to re-raise once consistent,
            # unless it is early stopping's own way of ending training.
            if not self._stopped_early:
                self._interrupt = exc
            raise

    def notify(self, method_name, **cb_kwargs):
        if method_name != "on_epoch_end":
            return super().notify(method_name, **cb_kwargs)
        # skorch's notify, telling early stopping's KeyboardInterrupt (its stop signal, raised
        # once the epoch is recorded) from an interrupt of the user.
        self.on_epoch_end(self, **cb_kwargs)
        for _, cb in self.callbacks_:
            try:
                cb.on_epoch_end(self, **cb_kwargs)
            except KeyboardInterrupt:
                if isinstance(cb, EarlyStopping):
                    self._stopped_early, self._epochs_ended = True, len(self.history)
                raise
        self._epochs_ended = len(self.history)  # every callback has recorded the epoch

    def pop_interrupt(self) -> tuple[KeyboardInterrupt | None, int]:
        """The user's KeyboardInterrupt that ended the last ``fit_loop`` (None if none), and
        how many epochs had ended by then; forgets both (they are not part of the model)."""
        interrupt = self.__dict__.pop("_interrupt", None)
        ended = self.__dict__.pop("_epochs_ended", len(self.history))
        self.__dict__.pop("_stopped_early", None)
        return interrupt, ended

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        self.data_parallel_ = None  # the fitted net keeps nothing of the process group

    def get_iterator(self, dataset, training=False):
        if not training:
            return BatchIterator(dataset, self.batch_size, shuffle=False, generator=None)
        if getattr(self, "data_parallel_", None) is not None:
            dataset = self.data_parallel_.shard(dataset)  # this rank's rows of each global batch
        return EpochSeededBatches(self, dataset)

    # -- steps ----------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _pos_weight(self, logits: torch.Tensor) -> torch.Tensor | None:
        return None if self.pos_weight is None else self.pos_weight.to(logits.device)

    def set_compile(self, compile_module: bool | dict) -> None:
        """Switch ``torch.compile`` on or off (or change its arguments) between fits."""
        if compile_module != self.compile_module:
            self.compile_module = compile_module
            self.__dict__.pop("_compiled_forward", None)

    def _module_call(self):
        """``module_`` itself, or its ``torch.compile`` wrapper (built once, sharing the weights:
        optimizers, saving and export keep working on the plain module)."""
        if not self.compile_module:
            return self.module_
        compiled = self.__dict__.get("_compiled_forward")
        if compiled is None or compiled[0] is not self.module_:
            options = self.compile_module if isinstance(self.compile_module, dict) else {}
            compiled = (self.module_, torch.compile(self.module_, **options))
            self._compiled_forward = compiled
        return compiled[1]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_compiled_forward", None)  # compiled code does not pickle; rebuilt on use
        return state

    def _forward(self, X, labels: torch.Tensor | None = None):
        module = self._module_call()
        extra = {"labels": labels} if labels is not None and self.module_reads_labels_ else {}
        with self._autocast(), _no_donated_buffers(module is not self.module_):
            out = module(X, **extra)
        if isinstance(out, tuple):
            return out[0].float(), out[1]
        return out.float(), None

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        # Each epoch's random draws (dropout, router noise) depend only on the seed and the epoch
        # number, so a run resumed from a checkpoint repeats the uninterrupted one exactly.
        torch.manual_seed(self.seed + len(self.history))

    def _loss_bound(self, losses: torch.Tensor) -> torch.Tensor:
        """Per-task loss above which training has diverged (see ``_DIVERGED_LOSS_RATIO``)."""
        bound = torch.full_like(losses, _DIVERGED_LOSS_RATIO * math.log(2.0))
        pos_weight = self._pos_weight(losses)
        return bound if pos_weight is None else bound * pos_weight.clamp_min(1.0)

    def _diverged_error(
        self, losses: torch.Tensor, aux: torch.Tensor | None, bound: torch.Tensor
    ) -> FloatingPointError:
        values = losses.detach().float().cpu().tolist()
        bounds = bound.cpu().tolist()
        bad = [f"task {name!r} ({value})" for name, value in zip(self.task_names, values) if not math.isfinite(value)]
        if aux is not None and not bool(torch.isfinite(aux).all()):
            bad.append(f"the architecture's auxiliary loss ({aux.detach().float().cpu().tolist()})")
        step = sum("train_loss" in b for b in self.history[-1, "batches"]) + 1
        where = f"training diverged in epoch {len(self.history)}, step {step} (lr={self.lr})"
        advice = "Lower lr, check the inputs for extreme values, or try precision='fp32'."
        if bad:
            return FloatingPointError(
                f"{where}: the loss of {', '.join(bad)} is not finite. The weights are those of the last "
                f"finite step. {advice}"
            )
        high = [
            f"task {name!r} ({value:.3g} > {limit:.3g})"
            for name, value, limit in zip(self.task_names, values, bounds)
            if value > limit
        ]
        return FloatingPointError(
            f"{where}: the loss of {', '.join(high)} exploded to over {_DIVERGED_LOSS_RATIO:g} times that of "
            f"predicting 0.5 for every row, which no converging model reaches. The weights are those of the "
            f"step before. {advice}"
        )

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        # The loss check in train_step catches non-finite weights at the next step; this one
        # catches them after the epoch's last step (before the callbacks and predict see them).
        # Once an epoch, so one check per tensor and one device sync are cheap.
        state = self.mto_state_
        params = list(self.module_.parameters()) + ([] if state is None else list(state.parameters()))
        finite = [torch.isfinite(p.detach()).all() for p in params]
        if finite and not bool(torch.stack(finite).all()):
            raise FloatingPointError(
                f"training diverged in epoch {len(self.history)} (lr={self.lr}): the weights are no longer "
                "finite after its last step. Lower lr or check the inputs for extreme values."
            )

    def _train_mode(self, training: bool) -> None:
        """Put the module, the criterion and the method's state in training or eval mode.

        Walks the submodules (``Module.train``) only when the top-level mode changes: doing it
        before every step costs about 0.3 ms a step on an MMoE (3% of a small model's step).
        Every submodule is still reset at each change (a validation pass, a predict), so one a
        callback switched keeps its mode only until the next change.
        """
        modules = [m for m in (self.module_, self.criterion_, self.mto_state_) if isinstance(m, torch.nn.Module)]
        if any(m.training != training for m in modules):
            for module in modules:
                module.train(training)

    def train_step(self, batch, **fit_params):
        self._train_mode(True)
        X, (y, w) = batch
        self.optimizer_.zero_grad(set_to_none=True)
        logits, aux = self._forward(X, labels=y)
        losses = task_losses(logits, y, w, self._pos_weight(logits))
        dp = getattr(self, "data_parallel_", None)
        if dp is not None:  # global-batch loss values, this rank's share of the gradient
            losses, aux = dp.global_losses(losses, y, w, aux)
        # Checked before the update, so a diverged step never reaches the weights. One device
        # sync for both conditions: a NaN or infinite loss fails `<=` too.
        bound = self._loss_bound(losses.detach())
        if not bool((losses.detach() <= bound).all()) or (aux is not None and not bool(torch.isfinite(aux).all())):
            raise self._diverged_error(losses, aux, bound)
        if aux is not None and not aux.requires_grad:
            aux = None  # a constant (a regulariser switched off): nothing for the methods to backward
        weights = self.task_weights.to(losses.device)
        ctx = StepContext(self.module_, self.optimizer_, self.mto_state_, weights, aux, epoch=len(self.history) - 1)
        ctx.data_parallel = dp
        with _no_donated_buffers(bool(self.compile_module)):  # backward graphs compile here
            diagnostics = self.mto.backward(losses, ctx)
        if dp is not None:
            dp.sync_gradients(self.module_, ctx.state, already_summed=ctx.gradients_synced)
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        self.mto.step(ctx)
        if dp is not None:
            dp.broadcast_from_rank0(list(self.module_.buffers()))
        return {
            "loss": (weights * losses.detach()).sum(),
            "y_pred": logits.detach(),
            "diagnostics": diagnostics,
        }

    def validation_step(self, batch, **fit_params):
        self._train_mode(False)
        X, (y, w) = batch
        with torch.no_grad():
            logits, _ = self._forward(X)
            loss = (self.task_weights.to(logits.device) * task_losses(logits, y, w, self._pos_weight(logits))).sum()
        return {"loss": loss, "y_pred": logits}

    @torch.no_grad()
    def predict_logits(
        self, X: dict[str, torch.Tensor], batch_size: int, group: torch.Tensor | None = None
    ) -> np.ndarray:
        """Logits ``(n, k)`` in eval mode, computed batch by batch on the net's device; with
        request codes ``group`` each batch holds whole requests (scored as sets)."""
        self._train_mode(False)
        dataset = TaskDataset(X, group=group)
        if group is not None:
            logits = torch.empty(len(dataset), len(self.task_names))
            for index in request_batches(group, batch_size):
                Xb, _ = dataset.take(index)
                logits[index] = self._forward(Xb.to(self.device, non_blocking=True))[0].cpu()
            return logits.numpy()
        out = []
        for start in range(0, len(dataset), batch_size):
            # slices are views: no copy of the rows before they move to the device
            Xb = Batch({k: v[start : start + batch_size] for k, v in X.items()}).to(self.device, non_blocking=True)
            out.append(self._forward(Xb)[0].cpu())
        return torch.cat(out).numpy() if out else np.empty((0, len(self.task_names)), dtype=np.float32)
