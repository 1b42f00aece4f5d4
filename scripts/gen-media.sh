#!/bin/sh
# gen-media.sh DIR — generate a small media folder with the ffmpeg CLI: images of several sizes
# and formats, short videos in every supported container, captions in every supported form,
# and a few bad files. Used by `make demo` and the pipeline tests. Deterministic content.
set -eu
out=${1:?usage: gen-media.sh DIR}
mkdir -p "$out/images/wide" "$out/images/multi" "$out/images/nemo" "$out/videos" "$out/bad"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
src() { echo "testsrc2=size=$1:rate=${2:-1}"; }

# Images: a caption in each form.
ff -f lavfi -i "$(src 640x480)" -frames:v 1 -q:v 3 "$out/images/fox_in_snow.jpg"
printf '  A red fox\n  in   deep snow.  \n' > "$out/images/fox_in_snow.txt"
ff -f lavfi -i "$(src 360x640)" -frames:v 1 "$out/images/tall_tree.png"
printf '{"caption": "a tall pine tree", "author": "dfm"}\n' > "$out/images/tall_tree.json"
ff -f lavfi -i "$(src 1024x384)" -frames:v 1 -c:v libwebp "$out/images/wide/panorama.webp"
ff -f lavfi -i "$(src 200x100)" -frames:v 1 "$out/images/wide/strip.bmp"
cat > "$out/images/wide/meta.json" <<'J'
{"items": [{"file_name": "panorama.webp", "caption": "a mountain panorama at dawn"},
           {"filename": "strip.bmp", "caption": "a thin strip of colour"}]}
J
ff -f lavfi -i "$(src 300x300)" -frames:v 1 "$out/images/multi/cat.bmp"
printf '{"cat.bmp": ["a cat on a sofa", "a small grey cat"]}\n' > "$out/images/multi/captions.json"
ff -f lavfi -i "$(src 256x256)" -frames:v 1 "$out/images/nemo/tuxemon_sample_0001.png"
ff -f lavfi -i "$(src 320x240)" -frames:v 1 "$out/images/nemo/tuxemon_sample_0002.jpg"
printf '%s\n' '{"file_name": "tuxemon_sample_0001.png", "internvl": "a blue monster"}' \
  '{"file_name": "tuxemon_sample_0002.jpg", "internvl": "a green monster"}' \
  > "$out/images/nemo/tuxemon_internvl.json"
ff -f lavfi -i "$(src 500x500)" -frames:v 1 -pix_fmt gray "$out/images/grey_square.png"
ff -f lavfi -i "color=c=red@0.5:size=128x96,format=rgba" -frames:v 1 "$out/images/alpha_badge.png"
ff -f lavfi -i "$(src 800x600)" -frames:v 1 -pix_fmt rgb48be "$out/images/deep_colour.png"

# Videos: every container, captions as sidecars or file names.
ff -f lavfi -i "$(src 320x240 24)" -frames:v 48 -c:v libx264 -pix_fmt yuv420p "$out/videos/ocean_waves.mp4"
echo "waves rolling onto a beach" > "$out/videos/ocean_waves.txt"
ff -f lavfi -i "$(src 256x144 30)" -frames:v 45 -c:v libvpx-vp9 -b:v 200k "$out/videos/city_timelapse.webm"
ff -f lavfi -i "$(src 176x144 25)" -frames:v 30 -c:v mpeg4 "$out/videos/street_corner.avi"
ff -f lavfi -i "$(src 192x108 16)" -frames:v 33 -c:v libx264 -pix_fmt yuv420p "$out/videos/night_drive.mkv"
ff -f lavfi -i "$(src 160x160 12)" -frames:v 20 -c:v mjpeg "$out/videos/small_square.mov"
printf '{"caption": "a square clip"}\n' > "$out/videos/small_square.json"

# Bad files: reported with their path and reason, the rest goes through.
: > "$out/bad/empty.jpg"
head -c 300 "$out/images/tall_tree.png" > "$out/bad/truncated.png"
head -c 4096 /dev/zero | tr '\0' 'x' > "$out/bad/garbage.mp4"
echo "not media" > "$out/bad/notes.md"
