using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>
/// PORT's batch (Sehwag et al. 2022, Sec. 4): real and synthetic images in one batch, with the loss (1 -
/// gamma) * mean over the real images + gamma * mean over the synthetic ones. Written as one batch with one weight per
/// example, so every objective (PGD-AT, TRADES, Gaussian noise) mixes the same way. Without synthetic images the
/// weights are the plain mean. gamma = 0 gives real-only training and gamma = 1 synthetic-only training, as far as the
/// loss and its gradient go; a model with BatchNorm still computes its batch statistics over both parts.
/// </summary>
public static class PortMixing
{
    public static (Tensor Images, Tensor Labels, Tensor Weights) Mix(
        Tensor realImages,
        Tensor realLabels,
        Tensor? syntheticImages,
        Tensor? syntheticLabels,
        double gamma
    )
    {
        if (gamma is < 0 or > 1)
            throw new ArgumentOutOfRangeException(nameof(gamma), $"gamma must be in [0,1], got {gamma}");
        long real = realImages.shape[0];
        var device = realImages.device;
        if (syntheticImages is null || syntheticLabels is null)
            return (realImages, realLabels, full(real, 1.0 / real, device: device));
        long synthetic = syntheticImages.shape[0];
        // (1/n) * (1 - gamma) in float32, as the trainer always computed it (same bits, same trained weights).
        var weights = cat([
            full(real, 1.0 / real, device: device) * (1 - gamma),
            full(synthetic, gamma / synthetic, device: device),
        ]);
        return (cat([realImages, syntheticImages]), cat([realLabels, syntheticLabels]), weights);
    }
}
