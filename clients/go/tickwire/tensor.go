package tickwire

import (
	"encoding/binary"
	"fmt"
	"math"

	commonv1 "tickwire/clients/go/gen/tickwire/common/v1"
)

// Tensor layout (tickwire.common.v1.Tensor): the elements row-major (C order), little-endian,
// no padding, len(data) == product(shape) * itemsize. A (T, N) matrix holds row t in bytes
// [t*N*8, (t+1)*N*8) for float64. These helpers encode and decode with encoding/binary's
// LittleEndian, so they are right on any host byte order.

// Float64Tensor encodes data (product(shape) float64 values, row-major) as a FLOAT64 Tensor.
// With no shape, the shape is [len(data)]. It panics when the shape does not match len(data).
func Float64Tensor(data []float64, shape ...int64) *commonv1.Tensor {
	shape = checkShape(len(data), shape)
	buf := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(buf[8*i:], math.Float64bits(v))
	}
	return &commonv1.Tensor{Dtype: commonv1.DType_D_TYPE_FLOAT64, Shape: shape, Data: buf}
}

// Int32Tensor encodes data as an INT32 Tensor (enum values such as OptionType, ...).
func Int32Tensor(data []int32, shape ...int64) *commonv1.Tensor {
	shape = checkShape(len(data), shape)
	buf := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(buf[4*i:], uint32(v))
	}
	return &commonv1.Tensor{Dtype: commonv1.DType_D_TYPE_INT32, Shape: shape, Data: buf}
}

// Matrix encodes rows (all of the same length N) as a (len(rows), N) FLOAT64 Tensor.
func Matrix(rows [][]float64) *commonv1.Tensor {
	n := 0
	if len(rows) > 0 {
		n = len(rows[0])
	}
	flat := make([]float64, 0, len(rows)*n)
	for i, r := range rows {
		if len(r) != n {
			panic(fmt.Sprintf("tickwire: row %d has %d values, expected %d", i, len(r), n))
		}
		flat = append(flat, r...)
	}
	return Float64Tensor(flat, int64(len(rows)), int64(n))
}

// Float64s decodes a FLOAT64 Tensor into its values (row-major) and shape. It fails for
// another dtype or a buffer whose length does not match the shape.
func Float64s(t *commonv1.Tensor) ([]float64, []int64, error) {
	if t.GetDtype() != commonv1.DType_D_TYPE_FLOAT64 {
		return nil, nil, fmt.Errorf("tickwire: expected a FLOAT64 tensor, got %v", t.GetDtype())
	}
	n := int64(1)
	for _, d := range t.GetShape() {
		n *= d
	}
	if int64(len(t.GetData())) != 8*n {
		return nil, nil, fmt.Errorf("tickwire: tensor of shape %v needs %d bytes, has %d", t.GetShape(), 8*n, len(t.GetData()))
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, t.GetShape(), nil
}

func checkShape(n int, shape []int64) []int64 {
	if len(shape) == 0 {
		return []int64{int64(n)}
	}
	p := int64(1)
	for _, d := range shape {
		p *= d
	}
	if p != int64(n) {
		panic(fmt.Sprintf("tickwire: shape %v needs %d values, got %d", shape, p, n))
	}
	return shape
}
