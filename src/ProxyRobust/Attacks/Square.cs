using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Square Attack (Andriushchenko et al., ECCV 2020): a score-based random search that needs no gradients, so it is not
/// fooled by gradient masking. Each query proposes a change on a random square window, of side
/// round(sqrt(p * pixels)) where p follows the paper's piecewise-constant schedule from p_init = 0.8 (halved at queries
/// 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000), and keeps it if the margin loss z_y - max_{j!=y} z_j decreases.
/// l-inf: the window is set to +-eps per channel (vertical stripes at start). l-2: mass is moved from a second window
/// into the first with the paper's centred "eta" pattern (Algorithm 3), keeping ||delta||_2 = eps.
/// <para>Windows and signs are drawn per example (as in the paper's Algorithm 1; the PyTorch AutoAttack code shares one
/// window per batch). An example stops as soon as it is misclassified.</para>
/// </summary>
public sealed record Square(ThreatModel Threat, int Queries = 5000, double PInit = 0.8, int Restarts = 1, long Seed = 0)
    : IAttack
{
    public string Name => $"Square ({Threat}, {Queries} queries)";

    public IAttack WithSeed(long seed) => this with { Seed = seed };

    /// <summary>Reports the fraction of the batch's work done (every 100 queries).</summary>
    public IProgress<double>? Progress { get; init; }

    public IAttack WithProgress(IProgress<double>? progress) => this with { Progress = progress };

    /// <summary>Fraction of pixels in the window after <paramref name="query"/> queries (Andriushchenko et al., section
    /// 4).</summary>
    public double WindowFraction(int query) =>
        query switch
        {
            <= 10 => PInit,
            <= 50 => PInit / 2,
            <= 200 => PInit / 4,
            <= 500 => PInit / 8,
            <= 1000 => PInit / 16,
            <= 2000 => PInit / 32,
            <= 4000 => PInit / 64,
            <= 6000 => PInit / 128,
            <= 8000 => PInit / 256,
            _ => PInit / 512,
        };

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels)
    {
        using var mode = new AttackMode(model);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)Seeds.Derive(Seed, images.shape[0]), images.device);
        var x = images.detach();
        var adv = x.clone();
        var (robust, _) = RobustPoints.Clean(model, x, labels);
        for (int r = 0; r < Math.Max(1, Restarts); r++)
        {
            using var passScope = NewDisposeScope();
            var todo = robust.nonzero().view(-1);
            if (todo.shape[0] == 0)
                break;
            int restart = r;
            var advCurr = SingleRun(
                model,
                x.index_select(0, todo),
                labels.index_select(0, todo),
                generator,
                query => Progress?.Report((restart + (double)query / Queries) / Math.Max(1, Restarts))
            );
            var fooled = model.call(advCurr).argmax(1).ne(labels.index_select(0, todo));
            RobustPoints.MarkBroken(robust, adv, todo, fooled, advCurr);
        }
        return adv.MoveToOuterDisposeScope();
    }

    private static Tensor Margin(Classifier model, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        var logits = model.call(x);
        var zy = logits.gather(1, y.view(-1, 1)).squeeze(1);
        var others = logits.scatter(
            1,
            y.view(-1, 1),
            full([y.shape[0], 1], double.NegativeInfinity, dtype: logits.dtype, device: logits.device)
        );
        return (zy - others.amax([1])).MoveToOuterDisposeScope();
    }

    private Tensor RandomSigns(long[] shape, Generator g, Device device) =>
        rand(shape, generator: g, device: device).gt(0.5).to(ScalarType.Float32) * 2 - 1;

    /// <summary>Top-left corners, uniform in [0, size - s) per example (0 when the window fills the image).</summary>
    private static Tensor Corners(long n, long size, long s, Generator g, Device device) =>
        (rand(n, generator: g, device: device) * (size - s)).to(ScalarType.Int64);

    /// <summary>The mask [N,1,h,w] of an s x s window at per-example corners in an h x w image.</summary>
    private static Tensor Window(long s, Tensor top, Tensor left, long h, long w)
    {
        using var scope = NewDisposeScope();
        long n = top.shape[0];
        var rows = arange(h, device: top.device).view(1, -1) - top.view(-1, 1); // [N,h]
        var cols = arange(w, device: top.device).view(1, -1) - left.view(-1, 1); // [N,w]
        var mask = (rows.ge(0) & rows.lt(s)).view(n, 1, h, 1) & (cols.ge(0) & cols.lt(s)).view(n, 1, 1, w);
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>An s x s <paramref name="pattern"/> placed at per-example corners in an h x w image: [N,1,h,w], zero
    /// outside; and the window mask.</summary>
    private static (Tensor Placed, Tensor Mask) Place(Tensor pattern, Tensor top, Tensor left, long h, long w)
    {
        using var scope = NewDisposeScope();
        long s = pattern.shape[0],
            n = top.shape[0];
        var rows = arange(h, device: top.device).view(1, -1) - top.view(-1, 1); // [N,h]
        var cols = arange(w, device: top.device).view(1, -1) - left.view(-1, 1); // [N,w]
        var mask = Window(s, top, left, h, w);
        var idx = rows.clamp(0, s - 1).view(n, h, 1) * s + cols.clamp(0, s - 1).view(n, 1, w);
        var placed = pattern.flatten().index_select(0, idx.flatten()).view(n, 1, h, w) * mask.to(pattern.dtype);
        return (placed.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    private Tensor SingleRun(Classifier model, Tensor x, Tensor y, Generator g, Action<int> reportQuery)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0],
            c = x.shape[1],
            h = x.shape[2],
            w = x.shape[3];
        long features = c * h * w;
        double eps = Threat.Epsilon;
        var dev = x.device;
        Tensor xBest;
        if (Threat.Norm == Norm.Linf)
            xBest = (x + eps * RandomSigns([n, c, 1, w], g, dev)).clamp(0, 1);
        else
        {
            // Start: a grid of eta patterns with random signs, rescaled to norm eps.
            var delta = zeros_like(x);
            long s0 = Math.Max(h / 5, 1),
                start = Math.Max((h - s0 * 5) / 2, 0);
            for (long a = 0; a < h / s0 && start + (a + 1) * s0 <= h; a++)
            {
                for (long bcol = 0; bcol < w / s0 && start + (bcol + 1) * s0 <= w; bcol++)
                {
                    long vh = start + a * s0,
                        vw = start + bcol * s0;
                    using var cell = NewDisposeScope();
                    var e = Eta(s0, g).view(1, 1, s0, s0) * RandomSigns([n, c, 1, 1], g, dev);
                    delta[.., .., TensorIndex.Slice(vh, vh + s0), TensorIndex.Slice(vw, vw + s0)] += e;
                }
            }
            xBest = (x + UnitL2(delta) * eps).clamp(0, 1);
        }
        var marginMin = Margin(model, xBest, y);
        var lossMin = marginMin.clone();

        // The points still robust, in index order, as a working set: gathered once and shrunk when points break,
        // instead
        // of gathered from (and scattered back to) the whole batch at every query. Same rows, same order, same random
        // draws: the same result.
        var active = marginMin.gt(0).nonzero().view(-1);
        var xc = x.index_select(0, active);
        var xbc = xBest.index_select(0, active);
        var yc = y.index_select(0, active);
        var mmc = marginMin.index_select(0, active);
        var lmc = lossMin.index_select(0, active);
        // l-inf's box of each point still attacked, [x - eps, x + eps] within [0, 1]; clamping to it equals
        // clamping to the ball and then to [0, 1].
        var (lower, upper) = ((xc - eps).clamp_min(0), (xc + eps).clamp_max(1));
        for (int i = 0; i < Queries; i++)
        {
            if (i % 100 == 0)
                reportQuery(i);
            long m = active.shape[0];
            if (m == 0)
                break;
            double p = WindowFraction(i);
            Tensor xNew;
            if (Threat.Norm == Norm.Linf)
            {
                long s = Math.Max((long)Math.Round(Math.Sqrt(p * features / c)), 1);
                var top = Corners(m, h, s, g, dev);
                var mask = Window(s, top, Corners(m, w, s, g, dev), h, w);
                var change = mask.to(x.dtype) * (2 * eps) * RandomSigns([m, c, 1, 1], g, dev);
                xNew = minimum(maximum(xbc + change, lower), upper);
            }
            else
            {
                long s = Math.Max((long)Math.Round(Math.Sqrt(p * features / c)), 3);
                if (s % 2 == 0)
                    s++;
                var delta = xbc - xc;
                var (placed, mask1) = Place(Eta(s, g), Corners(m, h, s, g, dev), Corners(m, w, s, g, dev), h, w);
                var (_, mask2) = Place(
                    ones(s, s, device: dev),
                    Corners(m, h, s, g, dev),
                    Corners(m, w, s, g, dev),
                    h,
                    w
                );
                var m1 = mask1.to(x.dtype);
                var window1Norm = (delta * m1).pow(2).sum([2, 3], keepdim: true).sqrt(); // [m,c,1,1]
                var imageNorm = delta.flatten(1).pow(2).sum(1).sqrt().view(-1, 1, 1, 1);
                var windowsNorm = (delta * (mask1 | mask2).to(x.dtype))
                    .flatten(1)
                    .pow(2)
                    .sum(1)
                    .sqrt()
                    .view(-1, 1, 1, 1);
                var fresh = placed * RandomSigns([m, c, 1, 1], g, dev) + delta * m1 / (1e-12 + window1Norm);
                var budget = ((eps * eps - imageNorm.pow(2)).clamp_min(0) / c + windowsNorm.pow(2)).sqrt();
                fresh = fresh / (1e-12 + fresh.pow(2).sum([2, 3], keepdim: true).sqrt()) * budget;
                delta = delta * mask2.logical_not().to(x.dtype);
                delta = where(mask1.expand_as(delta), fresh, delta);
                xNew = (xc + UnitL2(delta) * eps).clamp(0, 1);
            }
            var margin = Margin(model, xNew, yc);
            var improved = margin.lt(lmc);
            lmc = where(improved, margin, lmc);
            improved = improved.logical_or(margin.le(0));
            mmc = where(improved, margin, mmc);
            xbc = where(improved.view(-1, 1, 1, 1), xNew, xbc);
            var still = mmc.gt(0);
            if (!still.all().item<bool>())
            {
                // Broken points leave the working set; their example is final.
                var broken = still.logical_not().nonzero().view(-1);
                xBest.index_copy_(0, active.index_select(0, broken), xbc.index_select(0, broken));
                var keep = still.nonzero().view(-1);
                (active, xc, xbc, yc, mmc, lmc, lower, upper) = (
                    active.index_select(0, keep),
                    xc.index_select(0, keep),
                    xbc.index_select(0, keep),
                    yc.index_select(0, keep),
                    mmc.index_select(0, keep),
                    lmc.index_select(0, keep),
                    lower.index_select(0, keep),
                    upper.index_select(0, keep)
                );
            }
            scope.DisposeEverythingBut(xBest, active, xc, xbc, yc, mmc, lmc, lower, upper);
        }
        if (active.shape[0] > 0)
            xBest.index_copy_(0, active, xbc);
        return xBest.MoveToOuterDisposeScope();
    }

    private static Tensor UnitL2(Tensor v)
    {
        using var scope = NewDisposeScope();
        return (v / (v.flatten(1).pow(2).sum(1).sqrt().view(-1, 1, 1, 1) + 1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The l-2 proposal pattern of Andriushchenko et al. (Algorithm 3): two s/2 x s blocks of opposite sign,
    /// each a sum of centred rectangles weighted 1/(k+1)^2, normalised to unit l-2 norm; transposed with probability
    /// 1/2.
    /// </summary>
    public static Tensor Eta(long s, Generator? g = null)
    {
        var top = EtaRectangles(s / 2, s);
        var bottom = EtaRectangles(s - s / 2, s);
        var delta = new float[s, s];
        for (long i = 0; i < s; i++)
        {
            for (long j = 0; j < s; j++)
                delta[i, j] = i < s / 2 ? top[i, j] : -bottom[i - s / 2, j];
        }
        double norm = Math.Sqrt(delta.Cast<float>().Sum(v => (double)v * v));
        var t = tensor(delta) / (float)norm;
        bool transpose = g is not null && rand(1, generator: g).item<float>() > 0.5;
        return transpose ? t.t().contiguous() : t;
    }

    private static float[,] EtaRectangles(long rows, long cols)
    {
        var d = new float[rows, cols];
        long rc = rows / 2 + 1,
            cc = cols / 2 + 1;
        long r0 = rc - 1,
            c0 = cc - 1;
        for (long k = 0; k < Math.Max(rc, cc); k++, r0--, c0--)
        {
            float add = 1f / ((k + 1) * (k + 1));
            for (long i = Math.Max(r0, 0); i < Math.Min(r0 + 2 * k + 1, rows); i++)
            {
                for (long j = Math.Max(c0, 0); j < Math.Min(c0 + 2 * k + 1, cols); j++)
                    d[i, j] += add;
            }
        }
        double norm = Math.Sqrt(d.Cast<float>().Sum(v => (double)v * v));
        for (long i = 0; i < rows; i++)
        {
            for (long j = 0; j < cols; j++)
                d[i, j] = (float)(d[i, j] / norm);
        }
        return d;
    }
}
