"""The seed script's training recipe, reproduced faithfully as the benchmark's reference.

Per-sample torchvision transforms, DataLoader worker processes, log_softmax fed to
CrossEntropyLoss, bf16/fp16 autocast with a GradScaler: exactly what the seed did, so its
speed and accuracy can be measured beside ours in one run. Not used by the project itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

LR = 0.0004699598617965072
DROPOUT = 0.33965070330128894
FC1_NEURONS = 196
BATCH_SIZE = 256


class SeedNet(nn.Module):
    """The seed script's network, with its log_softmax output."""

    def __init__(self, num_classes: int = 47) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(p=DROPOUT)
        self.fc1 = nn.Linear(320, FC1_NEURONS)
        self.fc2 = nn.Linear(FC1_NEURONS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.dropout(F.relu(self.fc1(x)), p=DROPOUT, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def loaders(data_dir: str) -> tuple[DataLoader, DataLoader]:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = datasets.EMNIST(
        data_dir, split="balanced", train=True, download=False, transform=transform
    )
    test = datasets.EMNIST(
        data_dir, split="balanced", train=False, download=False, transform=transform
    )
    workers = os.cpu_count() or 1
    return (
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers),
        DataLoader(test, batch_size=BATCH_SIZE, shuffle=False, num_workers=workers),
    )


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    predictions, targets = [], []
    for images, labels in loader:
        with torch.autocast(device_type=device.type):
            predictions.append(model(images.to(device)).argmax(dim=1).cpu())
        targets.append(labels)
    return torch.cat(predictions), torch.cat(targets)


def train(
    data_dir: str,
    epochs: int,
    device: torch.device,
    on_epoch_end: Callable[[int, float, nn.Module, DataLoader], None],
) -> tuple[float, int]:
    """Train as the seed did; after each epoch call `on_epoch_end(epoch, train_seconds, model,
    test_loader)` outside the training clock. Returns (training seconds, images seen)."""
    torch.manual_seed(0)
    train_loader, test_loader = loaders(data_dir)
    model = SeedNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type)
    seconds, images_seen = 0.0, 0
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            with torch.autocast(device_type=device.type):
                loss = loss_fn(model(images), labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            images_seen += len(labels)
        seconds += time.perf_counter() - start
        on_epoch_end(epoch, seconds, model, test_loader)
    return seconds, images_seen
