"""Turn the solver's choice into concrete devices and a typed, versioned plan document."""
