"""What a person does with the project, one function per action: take batches in, run the demo,
compare strategies, promote a model, verify the store, launch on a deployment, open the UI.

The `traincraft` command (cli.py) only parses arguments and calls these; the tests call them
too. They drive Dagster through its public API and ask the instance through defs/instance.py.
"""
