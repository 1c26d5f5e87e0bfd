"""The columns of the read API's frames (``Lab.runs``, ``Lab.sweeps``), their pandas dtypes,
and the metrics configurations are ranked by: plain data, so that the command line can offer
them as choices without loading pandas."""

RUN_COLUMNS = {
    "run_id": "int64",
    "sweep": "string",
    "status": "string",
    "seed": "int64",
    "learning_rate": "float64",
    "batch_size": "Int64",  # nullable: NULL means the whole training set
    "activation": "string",
    "gd": "string",
    "optimizer": "string",
    "hidden": "string",
    "learning_rate_schedule": "string",
    "init": "string",
    "alpha": "float64",
    "weight_decay": "float64",
    "final_train_loss": "float64",
    "final_val_loss": "float64",
    "final_train_accuracy": "float64",
    "final_val_accuracy": "float64",
    "best_val_loss": "float64",
    "best_epoch": "Int64",
    "epochs_run": "int64",
    "duration_s": "float64",
    "rung": "Int64",  # under a scheduler: the rung the run is at, or stopped at
}
METRICS = ("val_loss", "train_loss")  # what configurations can be ranked by
ACCURACY = {"val_loss": "val_accuracy", "train_loss": "train_accuracy"}  # on the same data
SWEEP = ("sweep_id", "name", "description", "status", "spec_hash")
# What Lab.sweeps adds to each sweep's row: what its runs are doing and how good they got.
ACTIVITY_COLUMNS = ("statuses", "started_at", "last_activity", "metric", "best")
SWEEP_COLUMNS = (*SWEEP, "created_at", "finished_at", "runs", *ACTIVITY_COLUMNS)
