"""What each CLI command does, as functions that return (data, renderer); the CLI prints."""
