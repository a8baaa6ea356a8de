"""What is run: study specs, the runner, the store and the command line."""
