using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>Labels unlabeled samples (e.g. from an unconditional generator) with a classifier, keeping its
/// confidence.</summary>
public static class PseudoLabeler
{
    public sealed record Labels(int[] Predicted, float[] Confidence);

    /// <summary>Predicted class and softmax probability of that class for every image, in batches, without
    /// gradients.</summary>
    public static Labels Label(
        Classifier model,
        ImageDataset images,
        int batchSize,
        Device device,
        IProgress<(int Done, int Total)>? progress = null
    )
    {
        // unlabeled images carry one pseudo-class, so in effect only the shape is checked
        model.Spec.CheckAccepts(images.Source, images.Channels, images.Height, images.Width, images.NumClasses);
        var predicted = new int[images.Count];
        var confidence = new float[images.Count];
        model.eval();
        using var noGrad = no_grad();
        BatchSampler.ForEachInOrder(
            images,
            batchSize,
            device,
            (x, _, at, _) =>
            {
                var (conf, cls) = nn.functional.softmax(model.call(x), 1).max(1);
                cls.cpu().to(ScalarType.Int32).data<int>().CopyTo(predicted, at);
                conf.cpu().data<float>().CopyTo(confidence, at);
            },
            progress
        );
        return new Labels(predicted, confidence);
    }
}
