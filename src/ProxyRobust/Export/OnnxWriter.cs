using System.Text;

namespace ProxyRobust.Export;

/// <summary>
/// The few ONNX protobuf messages a feed-forward classifier needs (onnx.proto3: ModelProto, GraphProto, NodeProto,
/// AttributeProto, TensorProto, ValueInfoProto), encoded by hand: varints and length-delimited fields, field numbers as
/// in onnx.proto. No protobuf dependency for a file that has a fixed, small shape.
/// </summary>
public sealed class OnnxGraph
{
    private readonly List<byte[]> _nodes = [],
        _initializers = [],
        _inputs = [],
        _outputs = [];
    private int _counter;

    public string Fresh(string hint) => $"{hint}_{_counter++}";

    /// <summary>A float32 constant (weights), stored as raw little-endian bytes.</summary>
    public string Initializer(string name, long[] dims, float[] values) =>
        RawInitializer(name, dims, FloatType, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));

    /// <summary>An int64 constant (e.g. a Reshape's target shape).</summary>
    public string Int64Initializer(string name, long[] dims, long[] values) =>
        RawInitializer(name, dims, Int64Type, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));

    private string RawInitializer(string name, long[] dims, int dataType, ReadOnlySpan<byte> raw)
    {
        var w = new ProtoWriter();
        foreach (var d in dims)
            w.Int64(1, d);
        w.Int64(2, dataType);
        w.String(8, name);
        w.Bytes(9, raw.ToArray());
        _initializers.Add(w.ToArray());
        return name;
    }

    private const int FloatType = 1,
        Int64Type = 7;

    /// <summary>A graph input; null dimensions are the batch ("N"). Float32 unless <paramref name="int64"/>.</summary>
    public void Input(string name, long?[] dims, bool int64 = false) =>
        _inputs.Add(ValueInfo(name, dims, int64 ? Int64Type : FloatType));

    public void Output(string name, long?[] dims) => _outputs.Add(ValueInfo(name, dims, FloatType));

    private static byte[] ValueInfo(string name, long?[] dims, int elemType)
    {
        var shape = new ProtoWriter();
        foreach (var d in dims)
        {
            var dim = new ProtoWriter();
            if (d is { } v)
                dim.Int64(1, v);
            else
                dim.String(2, "N");
            shape.Message(1, dim);
        }
        var tensorType = new ProtoWriter();
        tensorType.Int64(1, elemType);
        tensorType.Message(2, shape);
        var type = new ProtoWriter();
        type.Message(1, tensorType);
        var vi = new ProtoWriter();
        vi.String(1, name);
        vi.Message(2, type);
        return vi.ToArray();
    }

    /// <summary>Adds a node; attributes are int, long[] or float. Returns the (single) output name.</summary>
    public string Node(
        string op,
        string[] inputs,
        string? output = null,
        params (string Name, object Value)[] attributes
    )
    {
        output ??= Fresh(op.ToLowerInvariant());
        var n = new ProtoWriter();
        foreach (var i in inputs)
            n.String(1, i);
        n.String(2, output);
        n.String(3, Fresh(op));
        n.String(4, op);
        foreach (var (name, value) in attributes)
        {
            var a = new ProtoWriter();
            a.String(1, name);
            switch (value)
            {
                case float f:
                    a.Float(2, f);
                    a.Int64(20, 1);
                    break; // FLOAT
                case int i:
                    a.Int64(3, i);
                    a.Int64(20, 2);
                    break; // INT
                case long[] ints:
                    foreach (var v in ints)
                        a.Int64(8, v);
                    a.Int64(20, 7);
                    break; // INTS
                default:
                    throw new ArgumentException($"unsupported attribute type {value.GetType()}");
            }
            n.Message(5, a);
        }
        _nodes.Add(n.ToArray());
        return output;
    }

    public byte[] ToModel(string graphName, int opset = 13)
    {
        var g = new ProtoWriter();
        foreach (var n in _nodes)
            g.Bytes(1, n);
        g.String(2, graphName);
        foreach (var t in _initializers)
            g.Bytes(5, t);
        foreach (var i in _inputs)
            g.Bytes(11, i);
        foreach (var o in _outputs)
            g.Bytes(12, o);
        var opsetId = new ProtoWriter();
        opsetId.String(1, "");
        opsetId.Int64(2, opset);
        var m = new ProtoWriter();
        m.Int64(1, 8); // ir_version 8 (ONNX 1.10+; opset 13 needs >= 7)
        m.String(2, "proxyrobust");
        m.Message(7, g);
        m.Message(8, opsetId);
        return m.ToArray();
    }
}

/// <summary>Protobuf wire format: tag = field &lt;&lt; 3 | wire type; varint (0), 32-bit (5), length-delimited
/// (2).</summary>
internal sealed class ProtoWriter
{
    private readonly MemoryStream _s = new();

    private void Varint(ulong v)
    {
        while (v >= 0x80)
        {
            _s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        _s.WriteByte((byte)v);
    }

    private void Tag(int field, int wire) => Varint((ulong)((field << 3) | wire));

    public void Int64(int field, long v)
    {
        Tag(field, 0);
        Varint(unchecked((ulong)v));
    }

    public void Float(int field, float v)
    {
        Tag(field, 5);
        _s.Write(BitConverter.GetBytes(v));
    }

    public void Bytes(int field, byte[] b)
    {
        Tag(field, 2);
        Varint((ulong)b.Length);
        _s.Write(b);
    }

    public void String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));

    public void Message(int field, ProtoWriter m) => Bytes(field, m.ToArray());

    public byte[] ToArray() => _s.ToArray();
}
