"""A zoo of WebSocket echo servers for grading the battery: libraries, unusual-but-legal variants, mutants."""
