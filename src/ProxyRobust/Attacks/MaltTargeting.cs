using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// MALT's target choice (Melamed, Yehudai and Shamir, NeurIPS 2024, "MALT Powers Up Adversarial Attacks", Algorithm
/// 1): the model is taken as linear around the clean point, so the distance to the boundary between the true class y
/// and class j is estimated by (z_y - z_j) / ||grad z_y - grad z_j||_*, the logit gap over the dual norm of the
/// gradient gap (l1 for an l-inf threat, l2 for l-2). Classes are attacked in increasing order of that estimate instead
/// of AutoAttack's decreasing logit: a class with a large logit can sit behind a steep, far boundary. For a linear
/// model the estimate is the exact distance (without the [0,1] box).
/// </summary>
public static class MaltTargeting
{
    /// <summary>Per point, the classes other than its label ordered by estimated boundary distance (nearest first):
    /// [N, K-1], int64. One backward pass per class.</summary>
    public static Tensor Order(Classifier model, Tensor x, Tensor labels, Norm norm)
    {
        using var scope = NewDisposeScope();
        var distance = Distances(model, x, labels, norm);
        return distance.argsort(1).narrow(1, 0, distance.shape[1] - 1).MoveToOuterDisposeScope();
    }

    /// <summary>The estimated distance to each class's boundary, [N, K]; +infinity at the label's own
    /// column.</summary>
    public static Tensor Distances(Classifier model, Tensor x, Tensor labels, Norm norm)
    {
        using var scope = NewDisposeScope();
        var input = x.detach().requires_grad_(true);
        var logits = model.call(input);
        long classes = logits.shape[1];
        Tensor Gradient(Tensor selected) =>
            torch.autograd.grad([selected.sum()], [input], retain_graph: true)[0].flatten(1);
        var gradY = Gradient(logits.gather(1, labels.view(-1, 1)));
        var zy = logits.gather(1, labels.view(-1, 1)).detach();
        var columns = new List<Tensor>();
        for (long j = 0; j < classes; j++)
        {
            using var step = NewDisposeScope();
            var gap = zy.squeeze(1) - logits[.., j].detach();
            var gradGap = gradY - Gradient(logits[.., j]);
            var dual = norm == Norm.Linf ? gradGap.abs().sum(1) : gradGap.pow(2).sum(1).sqrt();
            columns.Add((gap / (dual + 1e-12)).MoveToOuterDisposeScope());
        }
        var d = stack(columns, 1);
        var own = nn.functional.one_hot(labels, classes).to(ScalarType.Bool);
        return d.masked_fill(own, double.PositiveInfinity).MoveToOuterDisposeScope();
    }
}
