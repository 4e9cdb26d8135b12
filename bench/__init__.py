"""The project's benchmark: Greenroom against two baselines, same machine, same run."""
