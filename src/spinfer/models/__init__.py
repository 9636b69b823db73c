"""The models part: network factory, checkpoint payloads and the predictor bundle.

Training, evaluation and serving all use it; it imports none of them (no training loop,
no MLflow), so a served model loads with the networks and the predictor only.
"""
