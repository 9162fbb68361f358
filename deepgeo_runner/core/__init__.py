"""Base floor: what every other floor may use and which imports none of them: atomic files,
the content-addressed cache, the console, the errors, signals, ranks, class tables, the training
history and checkpoint paths."""
