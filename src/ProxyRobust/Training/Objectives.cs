using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>The part of training that varies between methods: the loss of one batch.</summary>
public interface ITrainingObjective
{
    string Name { get; }

    /// <summary>Loss to minimise (scalar, differentiable w.r.t. the weights) and the logits it was computed from.</summary>
    (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels);
}

/// <summary>Standard (clean) training: cross-entropy, optionally with label smoothing.</summary>
public sealed class CrossEntropyObjective(double labelSmoothing = 0) : ITrainingObjective
{
    public string Name => "standard";

    public (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels)
    {
        var logits = model.forward(images);
        return (nn.functional.cross_entropy(logits, labels, label_smoothing: labelSmoothing), logits);
    }
}
