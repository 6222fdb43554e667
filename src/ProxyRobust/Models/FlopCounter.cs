using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Counts the multiply-accumulates of one forward pass (convolutions and linear layers, which dominate) by
/// running it once with hooks. A training step costs about 3x the forward (forward + backward for activations and
/// weights); an attack step about 2x (no weight gradients). FLOPs = 2 x MACs.
/// </summary>
public static class FlopCounter
{
    public static long ForwardMacsPerImage(Classifier model)
    {
        bool training = model.training;
        model.eval();
        long macs = ForwardMacsPerImage(
            model,
            () =>
            {
                using var x = zeros(1, model.Spec.InChannels, model.Spec.Height, model.Spec.Width);
                model.forward(x).Dispose();
            }
        );
        model.train(training);
        return macs;
    }

    /// <summary>The UNet's multiply-accumulates per image at one time step (self-attention's two batched products are
    /// not counted: none in the default network).</summary>
    public static long ForwardMacsPerImage(UNet net)
    {
        var s = net.Spec;
        return ForwardMacsPerImage(
            net,
            () =>
            {
                using var x = zeros(1, s.Channels, s.Height, s.Width);
                using var t = zeros(1, dtype: ScalarType.Int64);
                net.call(x, t, t).Dispose();
            }
        );
    }

    /// <summary>Runs <paramref name="forward"/> (a pass on a batch) with hooks on the model's convolutions and linear
    /// layers and returns their multiply-accumulates per image.</summary>
    public static long ForwardMacsPerImage(nn.Module model, Action forward)
    {
        long macs = 0;
        var removers = new List<Action>();
        foreach (var (_, m) in model.named_modules())
        {
            if (m is Conv2d conv)
            {
                var hc = conv.register_forward_hook(
                    (mod, input, output) =>
                    {
                        var w = conv.weight!;
                        macs += output.numel() / output.shape[0] * (w.shape[1] * w.shape[2] * w.shape[3]);
                        return output;
                    }
                );
                removers.Add(hc.remove);
            }
            else if (m is Linear lin)
            {
                var hl = lin.register_forward_hook(
                    (mod, input, output) =>
                    {
                        macs += output.numel() / output.shape[0] * lin.weight!.shape[1];
                        return output;
                    }
                );
                removers.Add(hl.remove);
            }
        }
        using (no_grad())
            forward();
        foreach (var remove in removers)
            remove();
        return macs;
    }
}
