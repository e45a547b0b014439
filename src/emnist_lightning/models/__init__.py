"""The model: nets and their registry, the model card, the LightningModule, optimizers."""
