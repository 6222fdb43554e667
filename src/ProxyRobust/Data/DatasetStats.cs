namespace ProxyRobust.Data;

public static class DatasetStats
{
    /// <summary>Per-channel mean and standard deviation of pixel values in [0,1] over (up to) the first <paramref
    /// name="maxImages"/> images.</summary>
    public static (float[] Mean, float[] Std) ChannelMeanStd(ImageDataset data, int maxImages = 20000)
    {
        int c = data.Channels,
            n = Math.Min(maxImages, data.Count);
        var sum = new double[c];
        var sumSq = new double[c];
        long perChannel = 0;
        for (int i = 0; i < n; i++)
        {
            var img = data.Image(i);
            for (int p = 0; p < img.Length; p++)
            {
                double v = img[p] / 255.0;
                sum[p % c] += v;
                sumSq[p % c] += v * v;
            }
            perChannel += img.Length / c;
        }
        var mean = new float[c];
        var std = new float[c];
        for (int k = 0; k < c; k++)
        {
            double m = perChannel == 0 ? 0 : sum[k] / perChannel;
            mean[k] = (float)m;
            std[k] = (float)Math.Max(1e-3, Math.Sqrt(Math.Max(0, sumSq[k] / Math.Max(1, perChannel) - m * m)));
        }
        return (mean, std);
    }
}
