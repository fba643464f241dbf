#!/usr/bin/env python3
import requests
import sys

def upload_firmware(host, firmware_path):
    url = f"http://{host}:3232/update"
    
    print(f"Uploading {firmware_path} to {url}")
    
    with open(firmware_path, 'rb') as f:
        files = {'file': f}
        response = requests.post(url, data=f.read(), stream=True)
        
        if response.status_code == 200:
            print("Upload successful!")
            print(response.text)
        else:
            print(f"Upload failed: {response.status_code}")
            print(response.text)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("Usage: upload_ota.py <host> <firmware.bin>")
        sys.exit(1)
    
    upload_firmware(sys.argv[1], sys.argv[2])
