"""Hardware routing: backends (numpy, torch, mlx), the cost model, calibration and the router."""
