#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"

namespace simnpo::model {

// The format stores little-endian values; reading them with memcpy relies on a
// little-endian host.
static_assert(std::endian::native == std::endian::little, "simnpo: safetensors I/O needs a little-endian host");

// One entry of a safetensors header. begin and end are byte offsets into the
// data section (the bytes after the header).
struct SafetensorsTensor {
    std::string name;
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::size_t begin = 0, end = 0;
};

namespace detail {

// Bytes per element of the dtypes a header may declare; nullopt for a name the
// format does not define. Only F64, F32, F16 and BF16 can be read as numbers.
inline std::optional<std::size_t> safetensors_dtype_size(std::string_view dtype) {
    static constexpr std::pair<std::string_view, std::size_t> sizes[] = {
        {"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"U16", 2},  {"I16", 2},  {"F16", 2},  {"BF16", 2},    {"U32", 4},
        {"I32", 4},  {"F32", 4},  {"U64", 8},  {"I64", 8},     {"F64", 8}};
    for (const auto& [name, size] : sizes)
        if (name == dtype) return size;
    return std::nullopt;
}

// IEEE binary16 bits to the binary32 of the same value. Every half value,
// subnormals included, is exact in binary32; NaN payloads are kept.
inline float half_to_float(std::uint16_t half) {
    const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
    const std::uint32_t exponent = (half >> 10) & 0x1fu;
    std::uint32_t mantissa = half & 0x3ffu;
    std::uint32_t bits = 0;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // A subnormal is mantissa · 2^-24; renormalise so its leading 1 becomes implicit.
        const int top = std::bit_width(mantissa) - 1;  // position of the leading 1, 0..9
        mantissa = (mantissa << (23 - top)) & 0x7fffffu;
        bits = sign | (static_cast<std::uint32_t>(top - 24 + 127) << 23) | mantissa;
    }
    return std::bit_cast<float>(bits);
}

template <class T>
T load_little_endian(const char* bytes) {
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
}

// Unmaps a file's mapping of `size` bytes.
struct Unmap {
    std::size_t size = 0;
    void operator()(const char* data) const { ::munmap(const_cast<char*>(data), size); }
};

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i != 0) text += ',';
        text += std::to_string(shape[i]);
    }
    return text + ']';
}

}  // namespace detail

// A safetensors file with its header validated: the bytes are either mapped
// from the file (open) or held in memory (parse), and tensors are read, with
// conversion, from them on demand. Move-only; a mapping is unmapped with it.
class SafetensorsFile {
public:
    // Headers beyond this are refused rather than parsed: real ones are kilobytes.
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    // Validates `bytes` as a whole safetensors file; `where` (its path) starts
    // every error message.
    static SafetensorsFile parse(std::string bytes, const std::string& where) {
        SafetensorsFile file;
        file.where_ = where;
        file.owned_ = std::move(bytes);
        file.validate();
        return file;
    }

    // Maps the file at `path` read-only and validates it: a model's weights are
    // never copied whole into memory. The file must not be truncated while the
    // object lives (reading a page gone from the file raises SIGBUS, as with any
    // mapping); files are replaced by rename, which leaves a mapped one whole.
    static SafetensorsFile open(const std::filesystem::path& path) {
        SafetensorsFile file;
        file.where_ = path.string();
        // O_NONBLOCK: a named pipe in a weight file's place is refused below, not waited on.
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) fail(file.where_, ": cannot open for reading: ", std::strerror(errno));
        struct stat status {};
        if (::fstat(fd, &status) != 0) {
            const int error = errno;
            ::close(fd);
            fail(file.where_, ": cannot read its size: ", std::strerror(error));
        }
        if (!S_ISREG(status.st_mode)) {
            ::close(fd);
            fail(file.where_, S_ISDIR(status.st_mode) ? ": is a directory, not a file"
                                                      : ": is not a regular file (weights are mapped into memory)");
        }
        const auto size = static_cast<std::size_t>(status.st_size);
        if (size != 0) {  // mmap refuses a length of 0; validate() reports the empty file
            void* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
            const int error = errno;
            if (mapped == MAP_FAILED) {
                ::close(fd);
                fail(file.where_, ": cannot map into memory: ", std::strerror(error));
            }
            file.mapping_ = Mapping(static_cast<const char*>(mapped), detail::Unmap{size});
        }
        ::close(fd);  // the mapping keeps the file's pages
        file.validate();
        return file;
    }

    // The path given to open() or parse(), which starts this file's errors.
    const std::string& where() const { return where_; }

    // Every tensor, in the order of its data in the file.
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }

    const SafetensorsTensor* find(std::string_view name) const {
        const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                         [&](std::size_t i, std::string_view key) { return tensors_[i].name < key; });
        return it != by_name_.end() && tensors_[*it].name == name ? &tensors_[*it] : nullptr;
    }

    // The header's "__metadata__" object; an empty object when there is none.
    const nlohmann::json& metadata() const { return metadata_; }

    // Converts `tensor`'s values (F32, F16, BF16 or F64) to Scalar, in row-major order.
    template <class Scalar>
    void read(const SafetensorsTensor& tensor, std::span<Scalar> out) const {
        static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                      "SafetensorsFile::read converts to float or double");
        const auto element_size = detail::safetensors_dtype_size(tensor.dtype);
        const std::string_view bytes = this->bytes();
        const std::size_t data_size = bytes.size() - data_begin_;
        // The tensor comes from the caller: make sure it describes bytes of this file.
        if (!element_size || tensor.begin > tensor.end || tensor.end > data_size ||
            (tensor.end - tensor.begin) / *element_size != out.size() ||
            (tensor.end - tensor.begin) % *element_size != 0)
            fail(where_, ": tensor '", tensor.name, "' does not fit an output of ", out.size(), " elements");
        const char* data = bytes.data() + data_begin_ + tensor.begin;
        const auto convert = [&](auto decode, std::size_t stride) {
            for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Scalar>(decode(data + i * stride));
        };
        if (tensor.dtype == "F32") {
            if constexpr (std::is_same_v<Scalar, float>)
                std::copy_n(data, out.size_bytes(), reinterpret_cast<char*>(out.data()));
            else
                convert(detail::load_little_endian<float>, 4);
        } else if (tensor.dtype == "F64") {
            convert(detail::load_little_endian<double>, 8);
        } else if (tensor.dtype == "F16") {
            convert([](const char* p) { return detail::half_to_float(detail::load_little_endian<std::uint16_t>(p)); },
                    2);
        } else if (tensor.dtype == "BF16") {
            convert(
                [](const char* p) { return bf16_to_float(detail::load_little_endian<std::uint16_t>(p)); },
                2);
        } else {
            fail(where_, ": unsupported dtype '", tensor.dtype, "' for tensor '", tensor.name,
                 "' (F32, F16, BF16 and F64 can be read)");
        }
    }

private:
    using Mapping = std::unique_ptr<const char, detail::Unmap>;

    SafetensorsFile() = default;

    std::string_view bytes() const {
        return mapping_ ? std::string_view(mapping_.get(), mapping_.get_deleter().size) : std::string_view(owned_);
    }

    // Checks the header against the bytes and indexes its tensors.
    void validate() {
        const std::string_view bytes = this->bytes();
        const std::string& where = where_;
        if (bytes.size() < 8)
            fail(where, ": file of ", bytes.size(), " bytes is too short for a safetensors header");
        const auto header_size = detail::load_little_endian<std::uint64_t>(bytes.data());
        if (header_size > max_header_bytes)
            fail(where, ": header length ", header_size, " exceeds the limit of ", max_header_bytes, " bytes");
        if (header_size > bytes.size() - 8)
            fail(where, ": header length ", header_size, " runs past the end of the file (", bytes.size(),
                 " bytes)");
        nlohmann::json header = parse_json(bytes.substr(8, static_cast<std::size_t>(header_size)), where + ": header");
        if (!header.is_object()) fail(where, ": header is not a JSON object");

        data_begin_ = 8 + static_cast<std::size_t>(header_size);
        const std::size_t data_size = bytes.size() - data_begin_;
        for (auto& [name, entry] : header.items()) {
            if (name == "__metadata__") {
                if (!entry.is_object()) fail(where, ": '__metadata__' is not an object");
                metadata_ = std::move(entry);
                continue;
            }
            tensors_.push_back(parse_entry(name, entry, data_size, where));
        }

        // In data order, any overlap shows up between neighbours (the first
        // overlap found is between a tensor and the one just before it).
        std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
            return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
        });
        const SafetensorsTensor* previous = nullptr;
        for (const auto& tensor : tensors_) {
            if (tensor.begin == tensor.end) continue;  // empty tensors occupy no bytes
            if (previous != nullptr && tensor.begin < previous->end)
                fail(where, ": tensors '", previous->name, "' and '", tensor.name, "' overlap in the data section");
            previous = &tensor;
        }
        by_name_.resize(tensors_.size());
        for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
        std::sort(by_name_.begin(), by_name_.end(),
                  [&](std::size_t a, std::size_t b) { return tensors_[a].name < tensors_[b].name; });
    }

    static SafetensorsTensor parse_entry(const std::string& name, const nlohmann::json& entry,
                                         std::size_t data_size, const std::string& where) {
        if (!entry.is_object()) fail(where, ": entry '", name, "' is not an object");
        SafetensorsTensor tensor;
        tensor.name = name;

        const auto dtype = entry.find("dtype");
        if (dtype == entry.end() || !dtype->is_string())
            fail(where, ": tensor '", name, "': 'dtype' is missing or not a string");
        tensor.dtype = dtype->get<std::string>();
        const auto element_size = detail::safetensors_dtype_size(tensor.dtype);
        if (!element_size) fail(where, ": tensor '", name, "': unknown dtype '", tensor.dtype, "'");

        const auto shape = entry.find("shape");
        if (shape == entry.end() || !shape->is_array())
            fail(where, ": tensor '", name, "': 'shape' is missing or not an array");
        // Element count times element size must fit size_t; extents must fit int64.
        std::size_t bytes = *element_size;
        for (const auto& extent : *shape) {
            if (!extent.is_number_unsigned())
                fail(where, ": tensor '", name, "': shape entries must be non-negative integers");
            const auto value = extent.get<std::uint64_t>();
            if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
                (value != 0 && bytes > std::numeric_limits<std::size_t>::max() / value))
                fail(where, ": tensor '", name, "': shape's element count overflows");
            bytes *= static_cast<std::size_t>(value);
            tensor.shape.push_back(static_cast<std::int64_t>(value));
        }

        const auto offsets = entry.find("data_offsets");
        if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
            !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned())
            fail(where, ": tensor '", name, "': 'data_offsets' must be two non-negative integers");
        const auto begin = (*offsets)[0].get<std::uint64_t>(), end = (*offsets)[1].get<std::uint64_t>();
        if (begin > end) fail(where, ": tensor '", name, "': data_offsets [", begin, ", ", end, "] are not ascending");
        if (end > data_size)
            fail(where, ": tensor '", name, "': data_offsets [", begin, ", ", end, "] run past the data section (",
                 data_size, " bytes)");
        tensor.begin = static_cast<std::size_t>(begin);
        tensor.end = static_cast<std::size_t>(end);
        if (tensor.end - tensor.begin != bytes)
            fail(where, ": tensor '", name, "' holds ", tensor.end - tensor.begin, " bytes but shape ",
                 detail::shape_string(tensor.shape), " of ", tensor.dtype, " needs ", bytes);
        return tensor;
    }

    std::string where_;
    std::string owned_;  // parse()'s bytes
    Mapping mapping_;    // or open()'s
    std::size_t data_begin_ = 0;
    std::vector<SafetensorsTensor> tensors_;
    std::vector<std::size_t> by_name_;  // indices into tensors_, sorted by name
    nlohmann::json metadata_ = nlohmann::json::object();
};

// One tensor to write: `data` holds product(shape) values in row-major order,
// stored as `dtype`: "F32", or "BF16" (rounded to nearest even).
struct WriteTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::span<const float> data;
    std::string dtype = "F32";
};

namespace detail {

// The bytes `tensor`'s data takes in its dtype, after checking its name, shape
// and values; errors name `path`, the file it is written to.
inline std::size_t write_size(const std::filesystem::path& path, const WriteTensor& tensor) {
    if (tensor.dtype != "F32" && tensor.dtype != "BF16")
        fail(path.string(), ": tensor '", tensor.name, "': cannot write dtype '", tensor.dtype,
             "' (F32 and BF16 can be written)");
    if (tensor.name == "__metadata__") fail(path.string(), ": tensor name '__metadata__' is reserved");
    const std::size_t element_size = tensor.dtype == "F32" ? 4 : 2;
    std::size_t count = 1;
    for (const auto extent : tensor.shape) {
        if (extent < 0) fail(path.string(), ": tensor '", tensor.name, "' has a negative extent");
        if (extent != 0 &&
            count > std::numeric_limits<std::size_t>::max() / element_size / static_cast<std::size_t>(extent))
            fail(path.string(), ": tensor '", tensor.name, "' has too many elements");
        count *= static_cast<std::size_t>(extent);
    }
    if (count != tensor.data.size())
        fail(path.string(), ": tensor '", tensor.name, "' has shape ", detail::shape_string(tensor.shape), " but ",
             tensor.data.size(), " values");
    return count * element_size;
}

}  // namespace detail

// The bytes of a safetensors file holding `tensors`, each in its dtype, in the
// given order, data contiguous, header padded with spaces so that the data
// starts 8-byte aligned; `path` names the file in errors.
inline std::string safetensors_bytes(const std::filesystem::path& path, const std::vector<WriteTensor>& tensors) {
    nlohmann::json header = nlohmann::json::object();
    std::size_t offset = 0;
    for (const auto& tensor : tensors) {
        const std::size_t size = detail::write_size(path, tensor);
        if (header.contains(tensor.name)) fail(path.string(), ": tensor name '", tensor.name, "' is used twice");
        header[tensor.name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + size}}};
        offset += size;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::type_error&) {
        fail(path.string(), ": a tensor name is not valid UTF-8");
    }
    text.append((8 - text.size() % 8) % 8, ' ');

    std::string bytes(8 + text.size() + offset, '\0');
    const std::uint64_t header_size = text.size();
    std::memcpy(bytes.data(), &header_size, 8);
    std::memcpy(bytes.data() + 8, text.data(), text.size());
    char* data = bytes.data() + 8 + text.size();
    for (const auto& tensor : tensors) {
        if (tensor.dtype == "F32") {
            std::copy_n(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size_bytes(), data);
            data += tensor.data.size_bytes();
        } else {
            for (const float value : tensor.data) {
                const std::uint16_t bits = float_to_bf16(value);
                std::memcpy(data, &bits, 2);
                data += 2;
            }
        }
    }
    return bytes;
}

// Atomically replaces `path` with those bytes.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<WriteTensor>& tensors) {
    write_file_atomic(path, safetensors_bytes(path, tensors));
}

}  // namespace simnpo::model
