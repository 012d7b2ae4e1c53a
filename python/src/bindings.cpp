// breccia._core: the C++ core as seen from Python. This file only converts (Python memory <->
// breccia::Array, Python JSON text <-> recipes and layouts, C++ exceptions -> Python ones) and
// forwards to the C++ operations; every number is computed in breccia::breccia.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "breccia/array.hpp"
#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"
#include "breccia/layouts.hpp"
#include "breccia/ops.hpp"
#ifdef BRECCIA_WITH_CUDA
#include "breccia/kernels/cuda.hpp"
#endif
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace breccia::python {
namespace {

// Holds a reference to the Python object that owns an Array's memory. The last reference may
// be dropped on a thread without the GIL, so the deleter takes it.
struct PythonReference {
  PyObject* object;
  void operator()(void*) const {
    nb::gil_scoped_acquire gil;
    Py_DECREF(object);
  }
};

// Shared ownership of memory at `address` that the Python object `owner` keeps alive.
std::shared_ptr<void> python_owner(nb::object owner, void* address) {
  return std::shared_ptr<void>(address, PythonReference{owner.release().ptr()});
}

// The Python object that owns an Array's memory, or None (memory breccia allocated itself).
nb::object owner_object(const Array& array) {
  const auto* reference = std::get_deleter<PythonReference>(array.owner());
  return reference != nullptr ? nb::borrow(reference->object) : nb::none();
}

// Device outputs come from the caller's framework: `allocate(nbytes, device_id)` returns a
// buffer object (a torch uint8 tensor, say) with .data_ptr(), allocated on the framework's
// current stream; the Array keeps that object alive.
class PythonAllocator final : public Allocator {
 public:
  explicit PythonAllocator(nb::object allocate) : allocate_(std::move(allocate)) {}

  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    nb::gil_scoped_acquire gil;  // the ops run with the GIL released
    nb::object buffer = allocate_(bytes, device.id);
    const auto address = nb::cast<std::uintptr_t>(buffer.attr("data_ptr")());
    return python_owner(std::move(buffer), reinterpret_cast<void*>(address));
  }

 private:
  nb::object allocate_;
};

// The Context of one call from Python: the framework's allocator and stream for device data
// (nothing for host data: breccia's CPU allocator, no stream), and the kernel preference
// ("automatic", or "reference" for breccia.kernels.reference). Owns the allocator it points to.
class PythonContext {
 public:
  PythonContext(nb::object allocate, std::uintptr_t stream, std::string_view kernels) {
    if (!allocate.is_none()) allocator_.emplace(std::move(allocate));
    context_.allocator = allocator_ ? &*allocator_ : nullptr;
    context_.stream = reinterpret_cast<void*>(stream);
    if (kernels == "reference") {
      context_.kernels = KernelPreference::kReference;
    } else if (kernels != "automatic") {
      fail<ValueError>("kernels: expected 'automatic' or 'reference', got '", kernels, "'");
    }
  }
  PythonContext(const PythonContext&) = delete;
  PythonContext& operator=(const PythonContext&) = delete;

  const Context& context() const { return context_; }

 private:
  std::optional<PythonAllocator> allocator_;
  Context context_;
};

// Wraps memory that a Python object (NumPy array, torch tensor, ...) owns, without copying.
// Strides come in bytes, as NumPy and the array interface give them.
Array borrow(std::uintptr_t address, std::string_view dtype_text, const Shape& shape,
             const std::vector<std::int64_t>& byte_strides, nb::object owner, bool read_only,
             std::string_view device_kind, int device_id, std::string_view argument) {
  const DType dtype = dtype_from_name(dtype_text, argument);
  if (byte_strides.size() != shape.size()) {
    fail<ValueError>(argument, ": expected one stride per dimension (", shape.size(), "), got ",
                     byte_strides.size());
  }
  Strides strides;
  strides.reserve(byte_strides.size());
  for (const std::int64_t stride : byte_strides) {
    if (stride % itemsize(dtype) != 0) {
      fail<ValueError>(argument, ": expected strides that are multiples of the ", itemsize(dtype),
                       "-byte element size, got ", stride, " bytes");
    }
    strides.push_back(stride / itemsize(dtype));
  }
  Device device;
  if (device_kind == "cuda") {
    device = Device::cuda(device_id);
  } else if (device_kind != "cpu") {
    fail<ValueError>(argument, ": expected memory on 'cpu' or 'cuda', got '", device_kind, "'");
  }
  Array array = Array::borrow(reinterpret_cast<void*>(address), dtype, shape, strides, device,
                              python_owner(std::move(owner), reinterpret_cast<void*>(address)));
  return read_only ? array.marked_read_only() : array;
}

// NumPy type string of the raw bytes of a dtype: float8 and bfloat16 travel as unsigned
// integers of the same size, and Python views them with the ml_dtypes dtype afterwards.
const char* raw_typestr(DType dtype) {
  switch (dtype) {
    case DType::kU8:
    case DType::kE4M3:
    case DType::kE5M2:
    case DType::kE8M0:
    case DType::kE2M3:
    case DType::kE3M2:
      return "|u1";
    case DType::kI8:
      return "|i1";
    case DType::kI32:
      return "<i4";
    case DType::kI64:
      return "<i8";
    case DType::kF16:
      return "<f2";
    case DType::kBF16:
      return "<u2";
    case DType::kF32:
      return "<f4";
    case DType::kF64:
      return "<f8";
  }
  return "|u1";
}

// The NumPy array interface (version 3) of a CPU Array, so numpy.asarray views it zero-copy
// and keeps it alive through the array's base.
nb::dict array_interface(const Array& array) {
  if (!array.device().is_cpu()) {
    fail<DeviceError>("array: only CPU memory has a NumPy array interface, got ",
                      array.device().str());
  }
  nb::dict interface;
  interface["version"] = 3;
  interface["typestr"] = raw_typestr(array.dtype());
  nb::list shape;
  nb::list strides;
  for (int axis = 0; axis < array.ndim(); ++axis) {
    shape.append(array.shape()[axis]);
    strides.append(array.strides()[axis] * itemsize(array.dtype()));
  }
  interface["shape"] = nb::tuple(shape);
  interface["strides"] = nb::tuple(strides);
  interface["data"] =
      nb::make_tuple(reinterpret_cast<std::uintptr_t>(array.data()), array.read_only());
  return interface;
}

nb::tuple shape_tuple(const Shape& shape) {
  nb::list items;
  for (const std::int64_t dim : shape) items.append(dim);
  return nb::tuple(items);
}

// Python spelling of a C++ exception, by breccia's error kinds (error.hpp). The base classes
// are caught last so the most specific kind wins.
void translate_exception(const std::exception_ptr& exception, void*) {
  try {
    std::rethrow_exception(exception);
  } catch (const breccia::TypeError& error) {
    PyErr_SetString(PyExc_TypeError, error.what());
  } catch (const breccia::ValueError& error) {  // DeviceError included
    PyErr_SetString(PyExc_ValueError, error.what());
  } catch (const breccia::UnsupportedError& error) {
    PyErr_SetString(PyExc_NotImplementedError, error.what());
  } catch (const breccia::IOError& error) {
    PyErr_SetString(PyExc_OSError, error.what());
  }
}

// The module (top-level package) a Python object's type comes from.
std::string type_root_module(nb::handle object) {
  nb::object module = nb::getattr(nb::handle(reinterpret_cast<PyObject*>(Py_TYPE(object.ptr()))),
                                  "__module__", nb::none());
  if (module.is_none()) return {};
  std::string name = nb::cast<std::string>(nb::str(module));
  return name.substr(0, name.find('.'));
}

// A matmul operand: a bound ScaledTensor or Array. (nanobind's std::variant caster would also
// claim Recipe and Layout, which are bound as opaque classes, so this is done by hand.)
Operand operand_from(nb::handle object, std::string_view argument) {
  if (nb::isinstance<ScaledTensor>(object)) return nb::cast<ScaledTensor>(object);
  if (nb::isinstance<Array>(object)) return nb::cast<Array>(object);
  fail<breccia::TypeError>(argument, ": expected a ScaledTensor or an array, got ",
                           nb::cast<std::string>(nb::str(object.type())));
}

Recipe recipe_from_text(std::string_view json, std::string_view caller) {
  Recipe recipe = recipe_from_json(json, caller);
  validate(recipe);
  return recipe;
}

Layout layout_from_text(std::string_view json, std::string_view caller) {
  Layout layout = layout_from_json(json, caller);
  validate(layout);
  return layout;
}

}  // namespace

void bind_interop(nb::module_& m);  // bind_interop.cpp
void bind_io(nb::module_& m);       // bind_io.cpp: safetensors checkpoints
}  // namespace breccia::python

NB_MODULE(_core, m) {
  using namespace breccia;
  using namespace breccia::python;

  m.doc() = "breccia's C++ core. Private: use the `breccia` package.";
  m.attr("__version__") = BRECCIA_VERSION;
#ifdef BRECCIA_WITH_CUDA
  m.attr("CUDA_BUILT") = true;
#else
  m.attr("CUDA_BUILT") = false;
#endif
  nb::register_exception_translator(&translate_exception);
  // Recipes and layouts held in module globals (test parameters, user constants) can outlive
  // this module during interpreter shutdown; nanobind would report them as leaks.
  nb::set_leak_warnings(false);

  nb::class_<Array>(m, "Array", "An n-d view of typed memory (breccia::Array).")
      .def_static("borrow", &borrow, "address"_a, "dtype"_a, "shape"_a, "byte_strides"_a, "owner"_a,
                  "read_only"_a, "device_kind"_a = "cpu", "device_id"_a = 0, "argument"_a = "array",
                  "Wraps memory owned by `owner` without copying it.")
      .def_prop_ro("dtype", [](const Array& a) { return std::string(dtype_name(a.dtype())); })
      .def_prop_ro("shape", [](const Array& a) { return shape_tuple(a.shape()); })
      .def_prop_ro("device", [](const Array& a) { return a.device().str(); })
      .def_prop_ro("read_only", &Array::read_only)
      .def_prop_ro("data_ptr",
                   [](const Array& a) { return reinterpret_cast<std::uintptr_t>(a.data()); })
      .def_prop_ro("nbytes", &Array::nbytes)
      .def_prop_ro("owner", &owner_object,
                   "The Python object that owns the memory (None if breccia allocated it).")
      .def_prop_ro("__array_interface__", &array_interface)
      .def("__repr__", &Array::str);

  nb::class_<Recipe>(m, "Recipe", "A scaling recipe (breccia::Recipe).")
      .def_static("from_json", &recipe_from_text, "json"_a, "caller"_a = "recipe_from_json",
                  "Parses and validates a recipe's JSON text; errors are headed by `caller`.")
      .def("to_json", [](const Recipe& r) { return recipe_to_json(r); })
      .def("__repr__", [](const Recipe& r) { return recipe_repr(r); })
      .def("__hash__", [](const Recipe& r) { return recipe_hash(r); })
      .def("__eq__", [](const Recipe& a, const Recipe& b) { return a == b; })
      .def_prop_ro(
          "spec",
          [](const Recipe& recipe) {
            const RecipeSpec spec = spec_of(recipe);
            nb::dict out;
            out["family"] = std::string(to_string(spec.family));
            out["element"] = std::string(to_string(spec.element));
            out["scale"] = std::string(to_string(spec.scale));
            out["element_max"] = spec.element_max;
            out["element_bits"] = spec.element_bits;
            out["packed"] = spec.packed;
            out["per_tensor"] = spec.per_tensor;
            out["global_scale"] = spec.has_global_scale;
            out["zero_point"] = spec.has_zero_point;
            out["data_dtype"] = std::string(dtype_name(spec.data_dtype));
            out["scale_dtype"] = std::string(dtype_name(spec.scale_dtype));
            return out;
          },
          "What the recipe implies (breccia::RecipeSpec), as a dict.");

  nb::class_<Layout>(m, "Layout", "A scale layout (breccia::Layout).")
      .def_static("from_json", &layout_from_text, "json"_a, "caller"_a = "layout_from_json",
                  "Parses and validates a layout's JSON text; errors are headed by `caller`.")
      .def("to_json", [](const Layout& l) { return layout_to_json(l); })
      .def("__repr__", [](const Layout& l) { return layout_repr(l); })
      .def("__hash__", [](const Layout& l) { return layout_hash(l); })
      .def("__eq__", [](const Layout& a, const Layout& b) { return a == b; })
      .def(
          "validate",
          [](const Layout& layout, const Shape& logical_shape, const Array& scale) {
            validate_layout(layout, logical_shape, scale);
          },
          "logical_shape"_a, "scale"_a,
          "Raises ValueError unless `scale` fits this layout over data of `logical_shape`.");

  nb::class_<DelayedScalingState>(m, "DelayedScalingState",
                                  "Amax history and encode scale of a DelayedScaling recipe.")
      .def(
          "__init__",
          [](DelayedScalingState* self, const Recipe& recipe, std::optional<float> encode_scale,
             std::optional<std::vector<float>> history) {
            const DelayedScaling& delayed = as_delayed_scaling(recipe, "recipe");
            if (encode_scale || history) {
              new (self) DelayedScalingState(
                  delayed, encode_scale.value_or(1.0f),
                  history.value_or(std::vector<float>(delayed.amax_history_len, 0.0f)));
            } else {
              new (self) DelayedScalingState(delayed);
            }
          },
          "recipe"_a, "encode_scale"_a = nb::none(), "amax_history"_a = nb::none())
      .def_prop_ro("recipe", [](const DelayedScalingState& s) { return Recipe(s.recipe()); })
      .def_prop_ro("encode_scale", &DelayedScalingState::encode_scale)
      .def_prop_ro("decode_scale", &DelayedScalingState::decode_scale)
      .def_prop_ro("amax_history", &DelayedScalingState::amax_history)
      .def("update", &DelayedScalingState::update, "amax"_a);

  nb::class_<ScaledTensor>(m, "ScaledTensor", "breccia::ScaledTensor over borrowed arrays.")
      .def(nb::init<Array, Array, Recipe, Layout, std::optional<Array>, std::optional<Array>>(),
           "data"_a, "scale"_a, "recipe"_a, "layout"_a, "global_scale"_a = nb::none(),
           "zero_point"_a = nb::none())
      .def_prop_ro("data", &ScaledTensor::data)
      .def_prop_ro("scale", &ScaledTensor::scale)
      .def_prop_ro("global_scale", &ScaledTensor::global_scale)
      .def_prop_ro("zero_point", &ScaledTensor::zero_point)
      .def_prop_ro("recipe", &ScaledTensor::recipe)
      .def_prop_ro("layout", &ScaledTensor::layout)
      .def_prop_ro("shape", [](const ScaledTensor& s) { return shape_tuple(s.shape()); })
      .def_prop_ro("logical_shape",
                   [](const ScaledTensor& s) { return shape_tuple(s.logical_shape()); })
      .def("__repr__", &ScaledTensor::repr);

  // `allocate` and `stream` matter for device data only, `kernels` everywhere: see
  // PythonContext.
  m.def(
      "cast",
      [](const Array& x, const Recipe& recipe, int axis, DelayedScalingState* state,
         nb::object allocate, std::uintptr_t stream, std::string_view kernels,
         std::optional<float> tensor_amax) {
        const PythonContext python(std::move(allocate), stream, kernels);
        nb::gil_scoped_release release;
        return cast(x, recipe,
                    CastOptions{.axis = axis,
                                .state = state,
                                .context = python.context(),
                                .tensor_amax = tensor_amax});
      },
      "x"_a, "recipe"_a, "axis"_a = -1, "state"_a = nb::none(), "allocate"_a = nb::none(),
      "stream"_a = 0, "kernels"_a = "automatic", "tensor_amax"_a = nb::none());
  m.def(
      "cast_for_gemm",
      [](const Array& x, const Recipe& recipe, bool rowwise, bool columnwise, bool swizzled_scales,
         DelayedScalingState* state, nb::object allocate, std::uintptr_t stream,
         std::string_view kernels) {
        const PythonContext python(std::move(allocate), stream, kernels);
        GemmCast out;
        {
          nb::gil_scoped_release release;
          out = cast_for_gemm(x, recipe,
                              GemmCastOptions{.rowwise = rowwise,
                                              .columnwise = columnwise,
                                              .swizzled_scales = swizzled_scales,
                                              .state = state,
                                              .context = python.context()});
        }
        return nb::make_tuple(out.rowwise, out.columnwise, out.rowwise_swizzled_scale,
                              out.columnwise_swizzled_scale);
      },
      "x"_a, "recipe"_a, "rowwise"_a = true, "columnwise"_a = true, "swizzled_scales"_a = false,
      "state"_a = nb::none(), "allocate"_a = nb::none(), "stream"_a = 0, "kernels"_a = "automatic");
  m.def(
      "dequantize",
      [](const ScaledTensor& scaled, std::string_view out_dtype, nb::object allocate,
         std::uintptr_t stream, std::string_view kernels) {
        const PythonContext python(std::move(allocate), stream, kernels);
        const DType dtype = dtype_from_name(out_dtype, "out_dtype");
        nb::gil_scoped_release release;
        return dequantize(scaled, dtype, python.context());
      },
      "scaled"_a, "out_dtype"_a = "float32", "allocate"_a = nb::none(), "stream"_a = 0,
      "kernels"_a = "automatic");
  m.def(
      "matmul",
      [](nb::handle a, nb::handle b, std::string_view out_dtype, nb::object allocate,
         std::uintptr_t stream, std::string_view kernels) {
        const PythonContext python(std::move(allocate), stream, kernels);
        const Operand left = operand_from(a, "a"), right = operand_from(b, "b");
        const DType dtype = dtype_from_name(out_dtype, "out_dtype");
        nb::gil_scoped_release release;
        return matmul(left, right, dtype, python.context());
      },
      "a"_a, "b"_a, "out_dtype"_a = "float32", "allocate"_a = nb::none(), "stream"_a = 0,
      "kernels"_a = "automatic");
  m.def(
      "linear",
      [](nb::handle x, nb::handle w, std::optional<Array> bias, std::string_view out_dtype,
         nb::object allocate, std::uintptr_t stream, std::string_view kernels) {
        const PythonContext python(std::move(allocate), stream, kernels);
        const Operand input = operand_from(x, "x"), weight = operand_from(w, "w");
        const DType dtype = dtype_from_name(out_dtype, "out_dtype");
        nb::gil_scoped_release release;
        return linear(input, weight, bias, dtype, python.context());
      },
      "x"_a, "w"_a, "bias"_a = nb::none(), "out_dtype"_a = "float32", "allocate"_a = nb::none(),
      "stream"_a = 0, "kernels"_a = "automatic");
  m.def(
      "transpose",
      [](const ScaledTensor& x, nb::object allocate, std::uintptr_t stream) {
        const PythonContext python(std::move(allocate), stream, "automatic");
        nb::gil_scoped_release release;
        return transpose(x, python.context());
      },
      "x"_a, "allocate"_a = nb::none(), "stream"_a = 0);
  m.def(
      "requantize",
      [](const ScaledTensor& scaled, const Recipe& recipe, int axis, DelayedScalingState* state,
         nb::object allocate, std::uintptr_t stream, std::string_view kernels) {
        const PythonContext python(std::move(allocate), stream, kernels);
        nb::gil_scoped_release release;
        return requantize(scaled, recipe,
                          CastOptions{.axis = axis, .state = state, .context = python.context()});
      },
      "scaled"_a, "new_recipe"_a, "axis"_a = -1, "state"_a = nb::none(), "allocate"_a = nb::none(),
      "stream"_a = 0, "kernels"_a = "automatic");
  m.def(
      "reencode_fp4_as_fp8",
      [](const ScaledTensor& x, std::int64_t tile) {
        nb::gil_scoped_release release;
        return reencode_fp4_as_fp8(x, tile);
      },
      "x"_a, "tile"_a = 128);
  m.def("from_buffer", &from_buffer, "data"_a, "scale"_a, "recipe"_a, "layout"_a,
        "global_scale"_a = nb::none(), "zero_point"_a = nb::none());

  m.def("num_threads", &kernels::cpu::num_threads,
        "Threads the CPU kernels use (BRECCIA_NUM_THREADS, else all cores).");
  m.def("set_num_threads", &kernels::cpu::set_num_threads, "threads"_a,
        "Sets the threads the CPU kernels use, for the whole process.");
  m.def("simd_target", &kernels::cpu::simd_target,
        "The instruction set the CPU kernels run on this machine (Highway's name).");

  bind_interop(m);

#ifdef BRECCIA_WITH_CUDA
  m.def(
      "scaled_matmul_cuda",
      [](const ScaledTensor& a, const ScaledTensor& b, std::string_view out_dtype,
         nb::object allocate, std::uintptr_t stream) {
        const PythonContext python(std::move(allocate), stream, "automatic");
        const DType dtype = dtype_from_name(out_dtype, "out_dtype");
        nb::gil_scoped_release release;
        return kernels::cuda::matmul(a, b, dtype, python.context());
      },
      "a"_a, "b"_a, "out_dtype"_a = "float32", "allocate"_a = nb::none(), "stream"_a = 0);
#endif

  m.def(
      "_is_torch", [](nb::handle x) { return type_root_module(x) == "torch"; }, "x"_a,
      "True for a PyTorch tensor.");
  m.def(
      "_is_mlx", [](nb::handle x) { return type_root_module(x) == "mlx"; }, "x"_a,
      "True for an MLX array.");
  m.def(
      "_is_jax",
      [](nb::handle x) {
        const std::string root = type_root_module(x);
        return root == "jax" || root == "jaxlib";
      },
      "x"_a, "True for a JAX array.");
  bind_io(m);
}
