package tickwire.client;

import com.google.protobuf.ByteString;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import tickwire.common.v1.TensorOuterClass.DType;
import tickwire.common.v1.TensorOuterClass.Tensor;

/**
 * Java arrays to and from {@code tickwire.common.v1.Tensor}. Layout: the elements row-major (C
 * order), little-endian whatever the host (ByteBuffer with ByteOrder.LITTLE_ENDIAN), no
 * padding: a (T, N) matrix holds row t in bytes [t*N*8, (t+1)*N*8) for float64.
 */
public final class Tensors {
  private Tensors() {}

  /** A FLOAT64 tensor of {@code data} (product(shape) values, row-major); shape [n] if none. */
  public static Tensor ofDoubles(double[] data, long... shape) {
    long[] dims = checkShape(data.length, shape);
    ByteBuffer buf = ByteBuffer.allocate(8 * data.length).order(ByteOrder.LITTLE_ENDIAN);
    buf.asDoubleBuffer().put(data);
    return build(DType.D_TYPE_FLOAT64, dims, buf);
  }

  /** A (rows, cols) FLOAT64 tensor of a rectangular matrix. */
  public static Tensor ofMatrix(double[][] rows) {
    int cols = rows.length == 0 ? 0 : rows[0].length;
    double[] flat = new double[rows.length * cols];
    for (int i = 0; i < rows.length; i++) {
      if (rows[i].length != cols) {
        throw new IllegalArgumentException("row " + i + " has " + rows[i].length + " values, expected " + cols);
      }
      System.arraycopy(rows[i], 0, flat, i * cols, cols);
    }
    return ofDoubles(flat, rows.length, cols);
  }

  /** An INT32 tensor (enum values such as OptionType...). */
  public static Tensor ofInts(int[] data, long... shape) {
    long[] dims = checkShape(data.length, shape);
    ByteBuffer buf = ByteBuffer.allocate(4 * data.length).order(ByteOrder.LITTLE_ENDIAN);
    buf.asIntBuffer().put(data);
    return build(DType.D_TYPE_INT32, dims, buf);
  }

  /**
   * The values of a FLOAT64 tensor, row-major.
   *
   * @throws IllegalArgumentException another dtype, or a buffer that does not match the shape
   */
  public static double[] toDoubles(Tensor t) {
    if (t.getDtype() != DType.D_TYPE_FLOAT64) {
      throw new IllegalArgumentException("expected a FLOAT64 tensor, got " + t.getDtype());
    }
    long n = t.getShapeList().stream().mapToLong(Long::longValue).reduce(1, (a, b) -> a * b);
    if (t.getData().size() != 8 * n) {
      throw new IllegalArgumentException("tensor of shape " + t.getShapeList() + " needs " + 8 * n + " bytes");
    }
    double[] out = new double[(int) n];
    t.getData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().get(out);
    return out;
  }

  /** The shape of a tensor, outermost first. */
  public static long[] shape(Tensor t) {
    return t.getShapeList().stream().mapToLong(Long::longValue).toArray();
  }

  private static long[] checkShape(int n, long[] shape) {
    if (shape.length == 0) {
      return new long[] {n};
    }
    long p = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
    if (p != n) {
      throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + p + " values, got " + n);
    }
    return shape;
  }

  private static Tensor build(DType dtype, long[] shape, ByteBuffer buf) {
    Tensor.Builder b = Tensor.newBuilder().setDtype(dtype).setData(ByteString.copyFrom(buf.array()));
    for (long d : shape) {
      b.addShape(d);
    }
    return b.build();
  }
}
