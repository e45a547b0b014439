"""Using a trained model: model files, predictors, preprocessing, predict and export."""
