using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Attacks run one after another on a batch, each only on the points the ones before it left robust (AutoAttack's
/// rule, as one <see cref="IAttack"/>: for validation during training, where <see cref="AutoAttack.Run"/>'s state,
/// report and data-set plumbing are not needed). Attack i gets the seed derived from (Seed, i).
/// </summary>
public sealed record AttackSequence(string Name, ThreatModel Threat, IReadOnlyList<IAttack> Attacks, long Seed = 0)
    : IAttack
{
    public IAttack WithSeed(long seed) => this with { Seed = seed };

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels)
    {
        using var mode = new AttackMode(model);
        using var scope = NewDisposeScope();
        var x = images.detach();
        var adv = x.clone();
        var (robust, _) = RobustPoints.Clean(model, x, labels);
        for (int i = 0; i < Attacks.Count; i++)
        {
            using var step = NewDisposeScope();
            var todo = robust.nonzero().view(-1);
            if (todo.shape[0] == 0)
                break;
            var xb = x.index_select(0, todo);
            var yb = labels.index_select(0, todo);
            var advB = Attacks[i].WithSeed(Seeds.Derive(Seed, i)).Perturb(model, xb, yb);
            Tensor broken;
            using (no_grad())
                broken = model.call(advB).argmax(1).ne(yb);
            RobustPoints.MarkBroken(robust, adv, todo, broken, advB);
        }
        return adv.MoveToOuterDisposeScope();
    }
}
