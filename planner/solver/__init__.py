"""The CP-SAT model: choose how many copies of each replica recipe to run. Only this package imports ortools."""
