using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class TrainingTests
{
    public TrainingTests() => TestSupport.InitTorch();

    [Fact]
    public void Cosine_schedule_matches_its_closed_form()
    {
        var s = new CosineSchedule(0.1, TotalSteps: 110, WarmupSteps: 10);
        Assert.Equal(0.01, s.At(0), 12);
        Assert.Equal(0.1, s.At(9), 12);
        Assert.Equal(0.1, s.At(10), 12);
        Assert.Equal(0.05, s.At(60), 12);
        Assert.Equal(0.1 * (1 + Math.Cos(Math.PI * 0.25)) / 2, s.At(35), 12);
        Assert.Equal(0.0, s.At(110), 12);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sgd_matches_torch_optim_sgd(bool nesterov)
    {
        torch.manual_seed(3);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 3);
        using var ours = spec.Create();
        using var theirs = spec.Create();
        theirs.load_state_dict(ours.state_dict());
        using var sgd = new Sgd(ours, 0.9, 5e-4, nesterov);
        using var reference = torch.optim.SGD(theirs.parameters(), 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: nesterov);
        for (int step = 0; step < 5; step++)
        {
            using var x = rand(6, 1, 8, 8);
            using var y = tensor(new long[] { 0, 1, 2, 0, 1, 2 });
            foreach (var (model, update) in new (Classifier, Action)[] { (ours, () => sgd.Step(0.05)), (theirs, () => reference.step()) })
            {
                model.zero_grad();
                using var loss = nn.functional.cross_entropy(model.forward(x), y);
                loss.backward();
                update();
            }
        }
        foreach (var ((name, a), (_, b)) in ours.named_parameters().Zip(theirs.named_parameters()))
            Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-7), name);
    }

    [Fact]
    public void Ema_follows_its_recurrence()
    {
        torch.manual_seed(4);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 3);
        using var model = spec.Create();
        using var avg = spec.Create();
        avg.load_state_dict(model.state_dict());
        var ema = new WeightAverage(model, avg, 0.9);
        var p = model.parameters().First();
        var start = p.detach().clone();
        using (no_grad()) p.add_(1.0);
        ema.Update();
        ema.Update();
        // two updates towards start+1 from start: start + 1 - 0.9^2
        Assert.True(avg.parameters().First().allclose(start + (1 - 0.81), atol: 1e-6));
    }
}
