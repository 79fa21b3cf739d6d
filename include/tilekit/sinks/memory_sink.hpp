#pragma once
// A thread-safe in-memory sink, for tests and for embedding.

#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

class memory_sink final : public storage_sink {
public:
    void put(storage_object object) override {
        validate_key(object.key);
        std::lock_guard<std::mutex> lock(mutex_);
        ++put_count_;
        store_locked(std::move(object));
    }

    // Version tags are a counter of this sink's writes: every put gives the key a new tag, so
    // the compare in put_if() sees any write in between (no ABA).
    bool can_compare_and_put() const override { return true; }
    std::optional<versioned_object> read(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(key);
        if (found == objects_.end()) return std::nullopt;
        return versioned_object{found->second, versions_.at(key)};
    }
    conditional_put_result put_if(storage_object object, const std::string& expected_version) override {
        validate_key(object.key);
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = versions_.find(object.key);
        const std::string current = found == versions_.end() ? std::string() : found->second;
        if (current != expected_version) return {false, current};
        ++put_count_;
        return {true, store_locked(std::move(object))};
    }

    void flush() override {}

    // Removes an object; true when it existed.
    bool remove(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        versions_.erase(key);
        return objects_.erase(key) != 0;
    }

    bool can_list() const override { return true; }
    // The keys are copied first, so `on_key` may call remove().
    void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
        std::vector<std::string> found;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto it = objects_.lower_bound(prefix); it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
                found.push_back(it->first);
        }
        for (const std::string& key : found) on_key(key);
    }

    std::optional<storage_object> get(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(key);
        if (found == objects_.end()) return std::nullopt;
        return found->second;
    }

    bool contains(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return objects_.count(key) != 0;
    }

    std::vector<std::string> keys() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<std::string> result;
        result.reserve(objects_.size());
        for (const auto& entry : objects_) result.push_back(entry.first);
        return result;
    }

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return objects_.size();
    }

    // Number of put() calls, including overwrites.
    std::size_t put_count() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return put_count_;
    }

private:
    std::string store_locked(storage_object object) {
        std::string version = "m" + std::to_string(++writes_);
        versions_[object.key] = version;
        std::string key = object.key;
        objects_[std::move(key)] = std::move(object);
        return version;
    }

    mutable std::mutex mutex_;
    std::map<std::string, storage_object> objects_;
    std::map<std::string, std::string> versions_;
    std::uint64_t writes_ = 0;
    std::size_t put_count_ = 0;
};

TILEKIT_NAMESPACE_END
